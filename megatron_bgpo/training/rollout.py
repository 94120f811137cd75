"""Rollout phase of an RL step, one verb per stage: `Rollout.generate` G responses per prompt on the
training policy, `Rollout.score` them, `Rollout.batch` turns them into a `RolloutBatch` with group
advantages; `split_minibatches` cuts that into the rollout's optimizer updates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SampleOutput, SamplerConfig
from megatron_bgpo.models.llada.inference import decode_outputs
from megatron_bgpo.parallel.groups import ParallelGroups
from megatron_bgpo.rl.advantages import group_advantages, informative_groups
from megatron_bgpo.rl.rollout import RolloutBatch
from megatron_bgpo.tasks import Task, gather_scores
from megatron_bgpo.tasks.rewards import check_replica_consistent
from megatron_bgpo.tokenizer import Tokenizer
from megatron_bgpo.training.config import RLArgs


def encode_prompts(tokenizer: Tokenizer, texts: Sequence[str], max_prompt_length: int) -> Prompts:
    ids = [tokenizer.encode(t) for t in texts]
    too_long = [i for i, x in enumerate(ids) if len(x) > max_prompt_length]
    if too_long:
        raise ValueError(
            f"{len(too_long)} prompt(s) exceed --max-prompt-length {max_prompt_length} tokens "
            f"(longest {max(len(ids[i]) for i in too_long)}); raise the limit or filter the data"
        )
    return Prompts.from_lists(ids, pad_id=tokenizer.pad_id)


@dataclass
class Generation:
    """This rank's P_local * G responses, prompt-major."""

    examples: list[Any]  # [P_local * G], each prompt's example repeated G times
    prompts: Prompts  # [P_local * G, P]
    out: SampleOutput  # tokens [P_local * G, L]
    uid: torch.Tensor  # [P_local * G] int64, unique over the run (seeds sampling and MC masks)
    completions: list[str]


@dataclass
class Scores:
    rewards: torch.Tensor  # [P_local, G] fp64
    global_rewards: torch.Tensor  # [P_global, G] fp64
    global_correct: torch.Tensor  # [P_global, G] bool

    @property
    def informative(self) -> torch.Tensor:
        """[P_local] bool: this rank's groups whose rewards differ (A != 0 somewhere)."""
        return informative_groups(self.rewards)

    @property
    def zero_variance_fraction(self) -> float:
        return 1.0 - informative_groups(self.global_rewards).double().mean().item()


@dataclass(frozen=True)
class Rollout:
    """The fixed settings of every rollout of a run."""

    tokenizer: Tokenizer
    task: Task
    sampler: SamplerConfig
    rl: RLArgs
    max_prompt_length: int
    seed: int
    groups: ParallelGroups

    def generate(self, policy, examples: Sequence[Any], positions: np.ndarray, step: int) -> Generation:
        """G samples per prompt of ``examples`` (global positions ``positions`` in step ``step``'s batch)."""
        g = self.rl.group_size
        texts = [self.task.prompt_text(ex) for ex in examples]
        prompts = encode_prompts(self.tokenizer, texts, self.max_prompt_length).repeat_interleave(g)
        prompt_uid = step * self.rl.rollout_batch_size + torch.as_tensor(positions)
        uid = (prompt_uid[:, None] * g + torch.arange(g)).reshape(-1)
        out = policy.generate(prompts, self.sampler, seed=self.seed + step, row_ids=uid)
        repeated = [ex for ex in examples for _ in range(g)]
        completions = decode_outputs(self.tokenizer, out)
        return Generation(repeated, prompts, out, uid, completions)

    def score(self, gen: Generation) -> Scores:
        """Rewards, computed once per model replica (its MP group) and gathered over DP; raises unless
        rewards and generated tokens agree on every rank of the replica."""
        g, mp = self.rl.group_size, self.groups.mp
        scores = gather_scores(self.task, gen.completions, gen.examples, group=self.groups.dp, mp_group=mp)
        n, rank = len(gen.completions), self.groups.dp_rank
        global_rewards = torch.tensor([s.reward for s in scores], dtype=torch.float64).view(-1, g)
        check_replica_consistent(global_rewards, mp, "rewards")
        check_replica_consistent(gen.out.tokens, mp, "generated tokens")
        return Scores(
            global_rewards.reshape(-1)[rank * n : (rank + 1) * n].view(-1, g),
            global_rewards,
            torch.tensor([s.correct for s in scores]).view(-1, g),
        )

    def batch(self, gen: Generation, scores: Scores) -> RolloutBatch:
        """The update batch: group advantages; loss weight 1 / (G * mini-batch prompts) per response,
        so one update's loss summed over DP ranks is the mini-batch mean."""
        rl = self.rl
        advantages = group_advantages(
            scores.rewards, eps=rl.advantage_eps, normalize_std=rl.std_normalized_advantages
        )
        n = len(gen.completions)
        return RolloutBatch(
            prompt_ids=gen.prompts.input_ids,
            prompt_mask=gen.prompts.attention_mask,
            response_ids=gen.out.tokens,
            advantages=advantages.reshape(-1),
            response_uid=gen.uid,
            loss_weight=torch.full((n,), 1.0 / (rl.group_size * rl.mini_batch_size), dtype=torch.float64),
        )


def split_minibatches(batch: RolloutBatch, informative: torch.Tensor, rl: RLArgs) -> list[RolloutBatch]:
    """This rank's rows of each of the rollout's ``updates_per_rollout`` optimizer updates.

    Update u takes the u-th contiguous slice of prompt groups. Without a KL term, groups with equal
    rewards (A = 0 everywhere, no gradient) are dropped; a slice left empty keeps one zero-weight
    group so every rank runs the same collectives.
    """
    updates, g = rl.updates_per_rollout, rl.group_size
    per = len(informative) // updates
    out = []
    for u in range(updates):
        prompts = torch.arange(u * per, (u + 1) * per)
        if rl.drop_zero_variance_groups and rl.kl_beta == 0:
            prompts = prompts[informative[prompts]]
        empty = len(prompts) == 0
        if empty:
            prompts = torch.arange(u * per, u * per + 1)
        sub = batch.select((prompts[:, None] * g + torch.arange(g)).reshape(-1))
        if empty:
            sub.loss_weight = torch.zeros_like(sub.loss_weight)
        out.append(sub)
    return out
