"""The rollout batch an update consumes: responses (rows) with their prompts, advantages and weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    """Responses held by this data-parallel rank; row r is one response.

    prompt_ids: [R, P] left-padded prompt of each response; prompt_mask: [R, P] bool (True = real).
    response_ids: [R, L] generated canvas (EOS padded).
    advantages: [R] fp64.
    response_uid: [R] int64, unique over the whole global batch and run (seeds the MC masks).
    loss_weight: [R] fp64, the response's coefficient in the batch loss, usually
        1 / (group_size * prompts in the global batch), so summing over DP ranks gives the batch mean.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    advantages: Tensor
    response_uid: Tensor
    loss_weight: Tensor

    def __post_init__(self) -> None:
        r = self.response_ids.shape[0]
        for name in ("prompt_ids", "prompt_mask", "advantages", "response_uid", "loss_weight"):
            if getattr(self, name).shape[0] != r:
                raise ValueError(
                    f"RolloutBatch: {name} has {getattr(self, name).shape[0]} rows, expected {r}"
                )
        if self.prompt_ids.shape != self.prompt_mask.shape:
            raise ValueError("RolloutBatch: prompt_ids and prompt_mask shapes differ")

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def prompt_position_ids(self) -> Tensor:
        """[R, P] positions, 0 at each row's first real prompt token."""
        return (torch.cumsum(self.prompt_mask.to(torch.int64), dim=1) - 1).clamp_min(0)

    def select(self, rows: Tensor) -> RolloutBatch:
        return RolloutBatch(
            self.prompt_ids[rows],
            self.prompt_mask[rows],
            self.response_ids[rows],
            self.advantages[rows],
            self.response_uid[rows],
            self.loss_weight[rows],
        )
