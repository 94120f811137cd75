"""Rollout phase of an RL step: generate G responses per prompt on the training model, score them,
and turn them into a `RolloutBatch` with group advantages and global loss weights."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.models.llada.inference import decode_outputs
from megatron_bgpo.rl.advantages import group_advantages, informative_groups
from megatron_bgpo.rl.rollout import RolloutBatch
from megatron_bgpo.tasks import Task, gather_scores
from megatron_bgpo.tasks.rewards import check_replica_consistent
from megatron_bgpo.tokenizer import Tokenizer


@dataclass
class RolloutResult:
    batch: RolloutBatch  # all P_local * G responses, prompt-major
    informative: torch.Tensor  # [P_local] bool: groups whose rewards differ (A != 0 somewhere)
    rewards: torch.Tensor  # [P_local, G]
    global_rewards: torch.Tensor  # [P_global, G]
    global_correct: torch.Tensor  # [P_global, G] bool
    completions: list[str]
    zero_variance_fraction: float
    generated_tokens: int
    seconds: float


def encode_prompts(tokenizer: Tokenizer, texts: Sequence[str], max_prompt_length: int) -> Prompts:
    ids = [tokenizer.encode(t) for t in texts]
    too_long = [i for i, x in enumerate(ids) if len(x) > max_prompt_length]
    if too_long:
        raise ValueError(
            f"{len(too_long)} prompt(s) exceed --max-prompt-length {max_prompt_length} tokens "
            f"(longest {max(len(ids[i]) for i in too_long)}); raise the limit or filter the data"
        )
    return Prompts.from_lists(ids, pad_id=tokenizer.pad_id)


def run_rollout(
    *,
    denoiser: MegatronDenoiser,
    tokenizer: Tokenizer,
    task: Task,
    examples: Sequence[Any],
    positions: np.ndarray,
    step: int,
    sampler: SamplerConfig,
    group_size: int,
    global_prompts: int,
    max_prompt_length: int,
    seed: int,
    dp_group,
    advantage_eps: float,
    normalize_std: bool = True,
    mp_group=None,
) -> RolloutResult:
    """Generate, score and build the update batch for this DP rank's ``examples``.

    Rewards are computed on one rank of the replica's model-parallel group (``mp_group``; default
    Megatron's TP x PP group when it is initialized) and broadcast to its other ranks, then checked to
    agree, with the generated tokens, on all of them. Loss weights are left at 1; the loop sets them
    per mini-batch.
    """
    if mp_group is None:
        mp_group = _model_parallel_group()
    t0 = time.perf_counter()
    prompts = encode_prompts(tokenizer, [task.prompt_text(ex) for ex in examples], max_prompt_length)
    prompts = prompts.repeat_interleave(group_size)
    g = torch.arange(group_size)
    uid = ((step * global_prompts + torch.as_tensor(positions))[:, None] * group_size + g).reshape(-1)
    out = generate(
        denoiser,
        prompts,
        sampler,
        seed=seed + step,
        row_ids=uid,
        vocab=denoiser.vocab_shard(),
        pipeline=denoiser.pipeline_comm(),
    )
    completions = decode_outputs(tokenizer, out)
    repeated = [ex for ex in examples for _ in range(group_size)]
    scores = gather_scores(task, completions, repeated, group=dp_group, mp_group=mp_group)
    local_n = len(completions)
    dp_rank = torch.distributed.get_rank(dp_group) if torch.distributed.is_initialized() else 0
    local_scores = scores[dp_rank * local_n : (dp_rank + 1) * local_n]
    rewards = torch.tensor([s.reward for s in local_scores], dtype=torch.float64).view(-1, group_size)
    global_rewards = torch.tensor([s.reward for s in scores], dtype=torch.float64).view(-1, group_size)
    global_correct = torch.tensor([s.correct for s in scores]).view(-1, group_size)
    check_replica_consistent(global_rewards, mp_group, "rewards")
    check_replica_consistent(out.tokens, mp_group, "generated tokens")
    advantages = group_advantages(rewards, eps=advantage_eps, normalize_std=normalize_std)
    batch = RolloutBatch(
        prompt_ids=prompts.input_ids,
        prompt_mask=prompts.attention_mask,
        response_ids=out.tokens,
        advantages=advantages.reshape(-1),
        response_uid=uid,
        loss_weight=torch.full((local_n,), 1.0, dtype=torch.float64),  # set per mini-batch by the loop
    )
    zero_var = 1.0 - informative_groups(global_rewards).double().mean().item()
    return RolloutResult(
        batch,
        informative_groups(rewards),
        rewards,
        global_rewards,
        global_correct,
        completions,
        zero_var,
        int(out.lengths.sum()),
        time.perf_counter() - t0,
    )


def _model_parallel_group():
    """Megatron's model-parallel (TP x PP) group of this rank, or None without one."""
    if not torch.distributed.is_initialized():
        return None
    from megatron.core import parallel_state as ps

    return ps.get_model_parallel_group() if ps.model_parallel_is_initialized() else None
