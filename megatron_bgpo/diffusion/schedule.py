"""Block plan and linear transfer schedule of LLaDA's sampler (spec §2, steps 1-2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BlockPlan", "block_plan", "num_transfer_tokens"]


@dataclass(frozen=True)
class BlockPlan:
    """Semi-autoregressive layout of the generated canvas."""

    num_blocks: int
    block_length: int
    steps_per_block: int

    def block_slice(self, b: int) -> slice:
        """Positions of block ``b`` relative to the start of the generated region."""
        return slice(b * self.block_length, (b + 1) * self.block_length)


def block_plan(gen_length: int, block_length: int, steps: int) -> BlockPlan:
    """Split ``gen_length`` into blocks and ``steps`` evenly over them (LLaDA's asserts, as errors)."""
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ValueError(
            f"gen_length, block_length, steps must be > 0 (got {gen_length}, {block_length}, {steps})"
        )
    if gen_length % block_length:
        raise ValueError(f"gen_length {gen_length} is not a multiple of block_length {block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps {steps} is not a multiple of the number of blocks {num_blocks}")
    return BlockPlan(num_blocks, block_length, steps // num_blocks)


def num_transfer_tokens(mask_count: Tensor, steps: int) -> Tensor:
    """Tokens to commit at each step: [B] masked counts -> [B, steps] int64.

    Linear schedule: every step gets ``m // steps``, the first ``m % steps`` steps one more, so the row
    sums to ``m`` (LLaDA ``get_num_transfer_tokens``).
    """
    m = mask_count.to(torch.int64).unsqueeze(1)
    base, rem = m // steps, m % steps
    idx = torch.arange(steps, device=m.device).unsqueeze(0)
    return base + (idx < rem).to(torch.int64)
