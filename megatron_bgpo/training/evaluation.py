"""Held-out evaluation during a run: greedy, or sampled at ``--eval-temperature`` (k per prompt)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from megatron_bgpo.diffusion.sampler import SamplerConfig
from megatron_bgpo.models.llada.inference import decode_outputs
from megatron_bgpo.tasks import Task, gather_scores
from megatron_bgpo.tokenizer import Tokenizer
from megatron_bgpo.training.config import TrainConfig
from megatron_bgpo.training.rollout import encode_prompts


@dataclass(frozen=True)
class Evaluator:
    """Scores the policy on ``examples`` (sharded over DP ranks) with the run's eval settings."""

    tokenizer: Tokenizer
    task: Task
    examples: Sequence[Any]
    sampler: SamplerConfig  # the training sampler; length and steps replaced by the eval ones
    cfg: TrainConfig

    @torch.no_grad()
    def __call__(self, policy) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(metrics, per-example rewards by kind). Metrics: reward and accuracy; when sampling, the
        greedy numbers beside (``greedy_*``). Per-example rewards (the mean over the k samples of each
        example, in the eval set's order): kinds ``greedy`` and, when sampling, ``sampled``."""
        log = self.cfg.logging
        greedy, greedy_rewards = self._pass(policy, 0.0, 1)
        if log.eval_temperature == 0:
            return greedy, {"greedy": greedy_rewards}
        sampled, sampled_rewards = self._pass(policy, log.eval_temperature, log.eval_samples_per_prompt)
        metrics = {**sampled, **{f"greedy_{k}": v for k, v in greedy.items()}}
        return metrics, {"sampled": sampled_rewards, "greedy": greedy_rewards}

    def _pass(self, policy, temperature: float, k: int) -> tuple[dict[str, float], list[float]]:
        g, gen_cfg = policy.groups, self.cfg.generation
        per = math.ceil(len(self.examples) / g.dp_size)
        shard = list(self.examples[g.dp_rank * per : (g.dp_rank + 1) * per]) or list(self.examples[:1])
        shard = [ex for ex in shard for _ in range(k)]
        texts = [self.task.prompt_text(ex) for ex in shard]
        out = policy.generate(
            encode_prompts(self.tokenizer, texts, gen_cfg.max_prompt_length),
            self.sampler.with_(
                temperature=temperature, gen_length=gen_cfg.eval_length, steps=gen_cfg.eval_steps
            ),
            seed=self.cfg.seed,  # the same noise at every evaluation: the evaluations of a run are paired
            row_ids=g.dp_rank * per * k + torch.arange(len(shard)),
        )
        texts = decode_outputs(self.tokenizer, out)
        scores = gather_scores(self.task, texts, shard, group=g.dp, mp_group=g.mp)  # once per replica
        per_example = [sum(s.reward for s in scores[i : i + k]) / k for i in range(0, len(scores), k)]
        metrics = {
            "reward_mean": sum(s.reward for s in scores) / len(scores),
            "accuracy": sum(s.correct for s in scores) / len(scores),
        }
        return metrics, per_example
