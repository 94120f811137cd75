"""The per-step metrics a run logs (names are what metrics.jsonl, TensorBoard and W&B show)."""

from __future__ import annotations

from collections.abc import Sequence

from megatron_bgpo.parallel.groups import ParallelGroups
from megatron_bgpo.training.logging import peak_memory_mib
from megatron_bgpo.training.rollout import Generation, Scores

_COUNTS = ("overflow_guard", "exp_rows", "ppo_clipped")


def grad_metrics(grad_norms: Sequence[float], clip_grad: float) -> dict[str, float]:
    """Largest pre-clip gradient norm of the step's updates (megatron-core's optimizer.step returns the
    norm it clipped from) and the fraction of updates that were clipped."""
    clipped = sum(g > clip_grad for g in grad_norms) if clip_grad > 0 else 0
    return {"grad_norm": max(grad_norms), "grad_clipped_fraction": clipped / len(grad_norms)}


def rl_step_metrics(
    gen: Generation,
    scores: Scores,
    updates: Sequence[tuple[float, float, dict[str, float]]],
    rollout_s: float,
    update_s: float,
    lr: float,
    clip_grad: float,
    groups: ParallelGroups,
    ppo_clip: bool = False,
) -> dict[str, float]:
    """Metrics of one RL step from its rollout and its ``updates`` (loss, grad norm, stats) each;
    ``rollout_s`` covers generation and scoring, ``update_s`` micro-batching and the updates."""
    counts = {k: groups.replica_sum(sum(u[2].get(k, 0.0) for u in updates), loss_rank=True) for k in _COUNTS}
    exp_rows = max(counts["exp_rows"], 1.0)
    rewards = scores.global_rewards
    return {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "accuracy": scores.global_correct.double().mean().item(),
        "zero_variance_groups": scores.zero_variance_fraction,
        "loss": sum(u[0] for u in updates),
        **grad_metrics([u[1] for u in updates], clip_grad),
        "lr": lr,
        "rollout_s": rollout_s,
        "update_s": update_s,
        "gen_tokens_per_s": groups.replica_sum(int(gen.out.lengths.sum())) / max(rollout_s, 1e-9),
        "peak_mem_mib": peak_memory_mib(),
        "overflow_guard": counts["overflow_guard"],
        "clamp_fraction": counts["overflow_guard"] / exp_rows,
        **({"ppo_clip_fraction": counts["ppo_clipped"] / exp_rows} if ppo_clip else {}),
    }
