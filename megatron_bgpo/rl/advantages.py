"""Group-relative advantages (GRPO / BGPO style), spec §5.4."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, normalize_std: bool = True) -> torch.Tensor:
    """A = (r - mean_group) / (std_group + eps) for rewards [P, G] (P prompts, G responses each).

    ``normalize_std=False`` gives d1's unnormalised r - mean. The std is the unbiased sample std
    (torch default, as in GRPO implementations); a group with equal rewards gets A = 0 exactly.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [prompts, group_size >= 2], got {tuple(rewards.shape)}")
    rewards = rewards.to(torch.float64)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """[P] bool: groups whose rewards are not all equal. The others have A = 0 and can be dropped
    before any forward pass is spent on them (the loss normalisation keeps counting them)."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) > 0
