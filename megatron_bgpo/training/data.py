"""Prompt batches for RL steps: deterministic in (seed, step), sharded over data-parallel ranks.

The data position of a run is just the step counter: batch k is the k-th slice of a seeded
permutation of the examples (a new permutation each epoch), so resuming at step k continues
exactly where the run stopped, whatever the parallel layout. With ``fixed`` every step serves batch 0
(``--overfit-batch``: a check that the update raises the reward on the prompts it trains on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PromptSource:
    """Examples served ``batch_size`` at a time; ``shard`` picks a data-parallel rank's part."""

    examples: Sequence[Any]
    batch_size: int
    seed: int = 0
    fixed: bool = False  # every step serves the step-0 batch

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("PromptSource: no training examples")
        if self.batch_size > len(self.examples):
            raise ValueError(
                f"rollout batch size {self.batch_size} exceeds the number of training examples "
                f"({len(self.examples)})"
            )

    @property
    def batches_per_epoch(self) -> int:
        return len(self.examples) // self.batch_size

    def global_indices(self, step: int) -> np.ndarray:
        """Example indices of the global batch at ``step`` (drop-last epochs; always step 0's if fixed)."""
        epoch, within = divmod(0 if self.fixed else step, self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        return order[within * self.batch_size : (within + 1) * self.batch_size]

    def batch(self, step: int) -> list[Any]:
        """The whole global batch at ``step``."""
        return [self.examples[i] for i in self.global_indices(step)]

    def shard(self, step: int, dp_rank: int, dp_size: int) -> tuple[list[Any], np.ndarray]:
        """This DP rank's examples at ``step`` and their positions in the global batch."""
        if self.batch_size % dp_size != 0:
            raise ValueError(
                f"rollout batch size {self.batch_size} is not divisible by data-parallel size {dp_size}"
            )
        per = self.batch_size // dp_size
        positions = np.arange(dp_rank * per, (dp_rank + 1) * per)
        idx = self.global_indices(step)[positions]
        return [self.examples[i] for i in idx], positions
