"""Schedule arithmetic (hand-derived) and the counter-based RNG."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion import rng
from megatron_bgpo.diffusion.schedule import block_plan, num_transfer_tokens


def test_num_transfer_tokens_hand_derived():
    # 10 tokens over 4 steps: 10 = 4*2 + 2 -> the first two steps get 3
    # 3 over 4: 0 base, first three steps get 1; 8 over 4: 2 each; 0 over 4: nothing
    got = num_transfer_tokens(torch.tensor([10, 3, 8, 0]), 4)
    assert got.tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [2, 2, 2, 2], [0, 0, 0, 0]]
    assert num_transfer_tokens(torch.tensor([32]), 1).tolist() == [[32]]
    assert num_transfer_tokens(torch.tensor([5]), 7).tolist() == [[1, 1, 1, 1, 1, 0, 0]]


def test_block_plan():
    # BGPO math training: 512 tokens, 256 steps, block 32 -> 16 blocks x 16 steps (2 tokens/step)
    plan = block_plan(512, 32, 256)
    assert (plan.num_blocks, plan.steps_per_block) == (16, 16)
    assert plan.block_slice(3) == slice(96, 128)
    assert num_transfer_tokens(torch.tensor([32]), plan.steps_per_block).unique().tolist() == [2]
    assert block_plan(256, 256, 128).steps_per_block == 128  # pure diffusion
    for bad in [(100, 32, 64), (128, 32, 6), (0, 32, 4)]:
        with pytest.raises(ValueError):
            block_plan(*bad)


def test_uniform_is_keyed_not_positional():
    vocab = torch.arange(1000)
    full = rng.uniform(7, rng.Stream.GUMBEL, torch.tensor([[3]]), 5, vocab)
    part = rng.uniform(7, rng.Stream.GUMBEL, torch.tensor([[3]]), 5, vocab[600:])
    assert torch.equal(full[..., 600:], part)  # a vocab slice computes the same numbers
    assert full.dtype == torch.float64 and (full > 0).all() and (full < 1).all()
    assert not torch.equal(full, rng.uniform(8, rng.Stream.GUMBEL, torch.tensor([[3]]), 5, vocab))
    assert not torch.equal(full, rng.uniform(7, rng.Stream.GUMBEL, torch.tensor([[4]]), 5, vocab))
    big_seed = rng.uniform(2**40 + 7, 1, vocab)
    assert not torch.equal(big_seed, rng.uniform(7, 1, vocab))


def test_uniform_statistics():
    u = rng.uniform(1, rng.Stream.REMASK, torch.arange(300)[:, None], torch.arange(300)[None, :])
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    hist = torch.histc(u.float(), bins=10, min=0, max=1)
    assert (hist - 9000).abs().max() < 400  # ~4 sigma
    c = torch.corrcoef(torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()]))[0, 1]
    assert abs(float(c)) < 0.01
    g = rng.gumbel(0, torch.arange(200_000))
    assert abs(float(g.mean()) - 0.5772) < 0.01


def test_gumbel_max_samples_softmax():
    logits = torch.tensor([0.0, 1.0, -0.5, 2.0], dtype=torch.float64)
    n = 40_000
    g = rng.gumbel(3, torch.arange(n)[:, None], torch.arange(4)[None, :])
    counts = torch.bincount((logits + g).argmax(1), minlength=4).double()
    p = torch.softmax(logits, 0)
    assert ((counts / n - p).abs() < 4 * torch.sqrt(p * (1 - p) / n)).all()


def test_mix32_no_overflow_large_values():
    def lowbias32(v: int) -> int:  # plain python ints: the published algorithm
        m = 0xFFFFFFFF
        v ^= v >> 16
        v = (v * 0x7FEB352D) & m
        v ^= v >> 15
        v = (v * 0x846CA68B) & m
        return v ^ (v >> 16)

    xs = [0, 1, 12345, 2**31, 2**32 - 1, 0xDEADBEEF]
    y = rng.mix32(torch.tensor(xs, dtype=torch.int64))
    assert y.tolist() == [lowbias32(v) for v in xs]
