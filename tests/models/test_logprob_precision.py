"""bf16 logits give fp32 log-probs and ELBO sums: both are computed and accumulated in fp32, compared with
an fp64 computation on the same (bf16) values, and a bf16 computation is shown to miss that tolerance
(so the comparison can tell the two apart). Vocab-parallel at TP=1 and TP=2 (forked gloo ranks)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.elbo import elbo_terms
from megatron_bgpo.models.logprobs import chunked_token_logprobs, selected_token_logprobs
from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups
from tests.distributed import run_distributed

B, T, V = 3, 5, 512
FP32_ATOL = 2e-5  # fp32 log-softmax over 512 logits of size ~10 (eps 1.2e-7 x |value| ~ 20, with margin)


def _logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    logits = (torch.randn(B, T, V, generator=gen, dtype=torch.float64) * 4).to(torch.bfloat16)
    targets = torch.randint(0, V, (B, T), generator=gen)
    positions = torch.rand(B, T, generator=gen) < 0.6
    positions[0, 0] = True
    return logits, targets, positions


def _fp64_reference(logits, targets, positions) -> torch.Tensor:
    lp = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None])[..., 0]
    return torch.where(positions, lp, torch.zeros((), dtype=torch.float64))


def _head() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """bf16 hidden states [N, H], output weight [V, H] and targets [N] for the chunked path."""
    gen = torch.Generator().manual_seed(12)
    hidden = torch.randn(7, 32, generator=gen, dtype=torch.float64).to(torch.bfloat16)
    weight = (torch.randn(V, 32, generator=gen, dtype=torch.float64) * 0.7).to(torch.bfloat16)
    return hidden, weight, torch.randint(0, V, (7,), generator=gen)


def _rank(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    groups = parallel_groups(ParallelConfig(world, 1), init_distributed())
    logits, targets, positions = _logits()
    shard = logits.chunk(world, dim=-1)[groups.tp_rank].contiguous()  # this rank's vocab columns
    selected = selected_token_logprobs(shard, targets, positions, groups.tp)
    hidden, weight, head_targets = _head()
    local_weight = weight.chunk(world, dim=0)[groups.tp_rank]
    chunked = chunked_token_logprobs(
        hidden, head_targets, lambda h: h @ local_weight.T, groups.tp, chunk_rows=3
    )
    assert selected.dtype == torch.float32 and chunked.dtype == torch.float32
    return selected, chunked


@pytest.mark.parametrize("tp", [1, 2])
def test_bf16_logits_give_fp32_logprobs(tp: int) -> None:
    logits, targets, positions = _logits()
    ref = _fp64_reference(logits, targets, positions)
    hidden, weight, head_targets = _head()
    head_logits = (hidden @ weight.T).double()  # the bf16 output layer, then fp64
    head_ref = torch.log_softmax(head_logits, -1).gather(-1, head_targets[:, None])[:, 0]
    for got, chunked in run_distributed(_rank, tp):  # every TP rank holds the full result
        err = (got.double() - ref).abs().max().item()
        assert err <= FP32_ATOL, err
        chunked_err = (chunked.double() - head_ref).abs().max().item()
        assert chunked_err <= FP32_ATOL, chunked_err
    in_bf16 = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    bf16_err = (torch.where(positions, in_bf16.double(), 0.0) - ref).abs().max().item()
    print(f"TP={tp}: log-prob error {err:.3g}, chunked {chunked_err:.3g} (fp32), {bf16_err:.3g} (in bf16)")
    assert bf16_err > 10 * FP32_ATOL, bf16_err  # a bf16 computation would fail the check above


def test_elbo_sums_bf16_logprobs_in_fp32() -> None:
    gen = torch.Generator().manual_seed(5)
    n, length = 4, 1024
    lp = (-torch.rand(n, length, generator=gen, dtype=torch.float64) * 6).to(torch.bfloat16)
    mask = torch.rand(n, length, generator=gen) < 0.8
    weight = torch.tensor([1.0, 2.5, 1 / 3, 7.0])
    got = elbo_terms(lp, mask, weight)
    assert got.dtype == torch.float32
    ref = weight.double() * torch.where(mask, lp.double(), 0.0).sum(-1)
    rel = ((got.double() - ref).abs() / ref.abs()).max().item()
    assert rel <= 1e-6, rel
    in_bf16 = weight.to(torch.bfloat16) * torch.where(mask, lp, torch.zeros((), dtype=lp.dtype)).sum(-1)
    bf16_rel = ((in_bf16.double() - ref).abs() / ref.abs()).max().item()
    print(f"ELBO sum relative error {rel:.3g} (fp32 path), {bf16_rel:.3g} (accumulated in bf16)")
    assert bf16_rel > 100 * 1e-6, bf16_rel  # bf16 accumulation would fail the check above
