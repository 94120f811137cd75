"""The attention kernel only ever sees right-padded rows (models/llada/padding.py, issue #19 item 5).

TE's cuDNN fused attention reads a padding mask as per-row lengths (real tokens first). `LengthsOnly`
models that kernel on CPU: it keeps only the count of real keys per row. Fed the project's left-padded
canvases directly it is wrong; behind `right_padded` the model matches the reference forward.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from megatron.core.transformer.dot_product_attention import DotProductAttention

from megatron_bgpo.models.llada import layer_spec, llada_forward
from megatron_bgpo.models.llada.padding import right_padded, right_padding_order
from megatron_bgpo.models.llada.reference import reference_forward
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank


def _lengths_mask(mask: torch.Tensor) -> torch.Tensor:
    """What a lengths-only kernel attends to: the first (number of real keys) positions of each row."""
    real = (~mask[:, 0, 0, :]).sum(-1)
    return (torch.arange(mask.shape[-1])[None, :] >= real[:, None])[:, None, None, :]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention, q/k/v [s, b, h, d], mask [b, 1, 1, s] (True = pad key) -> [s, b, h * d]."""
    scores = torch.einsum("sbhd,tbhd->bhst", q, k).masked_fill(mask, float("-inf"))
    out = torch.einsum("bhst,tbhd->sbhd", scores.softmax(-1), v)
    return out.reshape(q.shape[0], q.shape[1], -1)


class _Spy:
    """A core-attention stand-in: plain attention with the mask it is given, recording each mask."""

    def __init__(self, lengths_only: bool = False) -> None:
        self.config = SimpleNamespace(context_parallel_size=1)
        self.lengths_only, self.masks = lengths_only, []

    def forward(self, q, k, v, mask, *args, **kwargs):
        self.masks.append(mask)
        return _attend(q, k, v, _lengths_mask(mask) if self.lengths_only else mask)


def _inputs(seed: int, s: int = 9, b: int = 4, h: int = 2, d: int = 4):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(s, b, h, d, generator=gen) for _ in range(3))
    pad = torch.zeros(b, s, dtype=torch.bool)
    pad[0, :3] = True  # left padding
    pad[1, -2:] = True  # right padding
    pad[2, [1, 4, 5]] = True  # holes
    return q, k, v, pad[:, None, None, :]


def test_order_puts_real_positions_first_in_order() -> None:
    pad = torch.tensor([[True, True, False, False, True, False]])
    assert right_padding_order(pad).tolist() == [[2, 3, 5, 0, 1, 4]]


@pytest.mark.parametrize("lengths_only", [False, True])
def test_right_padded_equals_masked_attention_on_real_queries(lengths_only: bool) -> None:
    q, k, v, mask = _inputs(seed=0)
    expected = _attend(q, k, v, mask)
    real = ~mask[:, 0, 0, :].t()  # [s, b]
    spy = right_padded(_Spy)(lengths_only)
    out = spy.forward(q, k, v, mask)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-6, atol=1e-6)
    (seen,) = spy.masks
    assert torch.equal(seen, _lengths_mask(seen)), "the kernel got a row that is not right-padded"
    if lengths_only:  # the hazard: a lengths-only kernel on the raw rows is wrong where they are not
        raw = _Spy(lengths_only=True).forward(q, k, v, mask)
        assert (raw[real] - expected[real]).abs().max() > 1e-2


def test_right_padded_rejects_other_masks() -> None:
    q, k, v, mask = _inputs(seed=1)
    with pytest.raises(ValueError, match="key-padding mask"):
        right_padded(_Spy)().forward(q, k, v, mask.expand(-1, 1, q.shape[0], -1))


class LengthsOnly(DotProductAttention):
    """megatron's local kernel reading the padding mask as lengths, like cuDNN's fused attention."""

    def forward(self, query, key, value, attention_mask, *args, **kwargs):
        return super().forward(query, key, value, _lengths_mask(attention_mask), *args, **kwargs)


def _model_rank(rank: int, world: int, protect: bool) -> float:
    """Max |logit error| over real tokens of a left-padded batch vs the reference forward."""
    kernel = right_padded(LengthsOnly) if protect else LengthsOnly
    layer_spec.right_padded = lambda cls: kernel  # this spawned process only
    s = setup_rank(1, 1, preset="tiny-gqa")
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, s.cfg.vocab_size, (3, 10), generator=gen)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, :4] = False
    mask[1, :1] = False
    with torch.no_grad():
        logits = llada_forward(s.chunks[0], tokens, mask)
        ref = reference_forward(s.weights, s.cfg, tokens, mask)
    return (logits[mask] - ref[mask]).abs().max().item()


def test_model_with_lengths_only_kernel_matches_reference_on_left_padded_rows() -> None:
    (protected,) = run_distributed(_model_rank, 1, True)
    (raw,) = run_distributed(_model_rank, 1, False)
    assert protected < 1e-5
    assert raw > 1e-2  # without right_padded the same kernel is wrong: the test can fail
