"""Per-example held-out rewards of a run (``eval_rewards.jsonl``, written beside metrics.jsonl by the
trainer's evaluation) and the paired gain between two evaluations of the same run.

Every evaluation of a run scores the same held-out examples with the same sampler noise, so the
evaluation before the first step (``--eval-at-start``: the frozen model) is a paired control of every
later one; the per-example difference has a much smaller standard error than two independent means.
"""

from __future__ import annotations

import math
from pathlib import Path

EvalRewards = dict[tuple[str, int], list[float]]
"""Per-example rewards keyed by (kind, step); kind ``sampled`` or ``greedy``; step 0 = before training."""


def read_eval_rewards(path: str | Path) -> EvalRewards:
    """``eval_rewards.jsonl`` (written beside metrics.jsonl): per-example held-out rewards by
    (kind, step), kind ``sampled`` or ``greedy``."""
    from megatron_bgpo.tasks.io import MalformedRecordError, iter_records

    out: EvalRewards = {}
    for rec in iter_records(path):
        if isinstance(rec, MalformedRecordError):
            raise ValueError(f"{rec.location}: not an eval-rewards record ({rec.reason})")
        try:
            out[(str(rec.data["kind"]), int(rec.data["step"]))] = [float(r) for r in rec.data["rewards"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{rec.location}: not an eval-rewards record ({e!r})") from None
    return out


def paired_gain(before: list[float], after: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-example difference after - before (the same examples and
    sampler noise in both evaluations, so the difference is paired)."""
    if len(before) != len(after) or len(before) < 2:
        raise ValueError(
            f"paired evaluations need the same >= 2 examples, got {len(before)} and {len(after)}"
        )
    d = [a - b for a, b in zip(after, before, strict=True)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
    return m, sd / math.sqrt(len(d))


def paired_gain_at(rewards: EvalRewards, kind: str, step: int) -> tuple[float, float]:
    """:func:`paired_gain` of the evaluation at ``step`` over the one at step 0."""
    for key in ((kind, 0), (kind, step)):
        if key not in rewards:
            raise ValueError(f"no {key[0]} evaluation at step {key[1]} in the run's eval_rewards.jsonl")
    return paired_gain(rewards[(kind, 0)], rewards[(kind, step)])
