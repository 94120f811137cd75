"""Print a run's reward curve from its ``metrics.jsonl`` (written by tools/train.py under ``--save``).

    python tools/reward_curve.py runs/tiny/bgpo/metrics.jsonl --window 5 [--baseline other/metrics.jsonl]

One row per window of ``--window`` training steps: mean rollout reward and accuracy over the window,
and the evaluation reward logged at the window's last step (if any). A run with ``--eval-at-start``
also gets its held-out reward before the first step (the frozen control) against the last one.
With ``--baseline`` (a run with the same seed, prompts and sampler settings, e.g. the same command at
``--lr 1e-12``) each row also shows the baseline's mean and the paired difference, which removes the
batch-to-batch difficulty noise.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from megatron_bgpo.training.eval_rewards import EvalRewards, paired_gain, read_eval_rewards


def read_metrics(path: str | Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(train rows by step, eval rows by step) of a metrics.jsonl file."""
    from megatron_bgpo.tasks.io import MalformedRecordError, iter_records

    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for rec in iter_records(path):
        if isinstance(rec, MalformedRecordError):
            raise ValueError(f"{rec.location}: not a metrics record ({rec.reason})")
        try:
            step, split = int(rec.data["step"]), rec.data.get("split", "train")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{rec.location}: not a metrics record ({e!r})") from None
        (evals if split == "eval" else train)[step] = rec.data
    if not train:
        raise ValueError(f"{path}: no training steps logged")
    return train, evals


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def curve_rows(
    train: dict[int, dict], evals: dict[int, dict], window: int, baseline: dict[int, dict] | None = None
) -> list[dict[str, float]]:
    """Per-window means; ``paired_gain`` averages run - baseline over the steps both logged."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    rows = []
    last = max(train)
    for lo in range(1, last + 1, window):
        steps = [s for s in range(lo, min(lo + window, last + 1)) if s in train]
        hi = min(lo + window - 1, last)
        row = {
            "first_step": lo,
            "last_step": hi,
            "reward_mean": _mean([train[s]["reward_mean"] for s in steps]),
            "accuracy": _mean([train[s].get("accuracy", math.nan) for s in steps]),
            "eval_reward": evals[hi]["reward_mean"] if hi in evals else math.nan,
        }
        if baseline is not None:
            both = [s for s in steps if s in baseline]
            row["baseline_reward"] = _mean([baseline[s]["reward_mean"] for s in both])
            row["paired_gain"] = _mean([train[s]["reward_mean"] - baseline[s]["reward_mean"] for s in both])
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, float]]) -> str:
    paired = "paired_gain" in rows[0]
    head = "| steps | rollout reward | accuracy | eval reward |" + (" baseline | gain |" if paired else "")
    lines = [head, "|" + "---|" * head.count(" |")]
    for r in rows:
        ev = "" if math.isnan(r["eval_reward"]) else f"{r['eval_reward']:.3f}"
        line = f"| {r['first_step']}-{r['last_step']} | {r['reward_mean']:.3f} | {r['accuracy']:.3f} | {ev} |"
        if paired:
            line += f" {r['baseline_reward']:.3f} | {r['paired_gain']:+.3f} |"
        lines.append(line)
    return "\n".join(lines)


def held_out_summary(evals: dict[int, dict], rewards: EvalRewards | None = None) -> str:
    """Held-out reward before training (step 0, --eval-at-start: the frozen control) and at the last
    evaluation, with the difference; greedy numbers beside when the run also logged them. With the
    run's per-example rewards, the difference gets its paired standard error and z = gain / SE."""
    if 0 not in evals or len(evals) < 2:
        return ""
    last = max(evals)
    lines = []
    for key, label, kind in (
        ("reward_mean", "held-out reward", "sampled"),
        ("greedy_reward_mean", "greedy held-out reward", "greedy"),
    ):
        if key in evals[0] and key in evals[last]:
            before, after = evals[0][key], evals[last][key]
            line = (
                f"{label}: {before:.3f} before (step 0) -> {after:.3f} at step {last} ({after - before:+.3f}"
            )
            if key == "reward_mean" and "greedy_reward_mean" not in evals[0]:
                kind = "greedy"  # a greedy-only evaluation logs its rewards as kind greedy
            if rewards and (kind, 0) in rewards and (kind, last) in rewards:
                gain, se = paired_gain(rewards[(kind, 0)], rewards[(kind, last)])
                line += f" +- {se:.3f} paired SE over {len(rewards[(kind, 0)])} examples"
                line += f", z {gain / se:.1f}" if se > 0 else ", identical per example"
            lines.append(line + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", help="metrics.jsonl of a run")
    p.add_argument("--window", type=int, default=5, help="training steps per row")
    p.add_argument("--baseline", help="metrics.jsonl of a paired control run")
    a = p.parse_args(argv)
    train, evals = read_metrics(a.metrics)
    baseline = read_metrics(a.baseline)[0] if a.baseline else None
    print(format_rows(curve_rows(train, evals, a.window, baseline)))
    rewards_path = Path(a.metrics).with_name("eval_rewards.jsonl")
    rewards = read_eval_rewards(rewards_path) if rewards_path.exists() else None
    summary = held_out_summary(evals, rewards)
    if summary:
        print(summary)


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
