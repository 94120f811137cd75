"""tools/reward_curve.py: window means, paired gain and bad-input errors on hand-written metrics files."""

from __future__ import annotations

import json
import sys

import pytest

from tests.commands import REPO, run_command

sys.path.insert(0, str(REPO / "tools"))
from reward_curve import curve_rows, format_rows, held_out_summary, read_metrics  # noqa: E402

from megatron_bgpo.training.eval_rewards import paired_gain, read_eval_rewards  # noqa: E402


def _write(path, rewards, evals=()):
    with open(path, "w") as f:
        for step, r in enumerate(rewards, 1):
            f.write(json.dumps({"step": step, "split": "train", "reward_mean": r, "accuracy": r / 2}) + "\n")
        for step, r in evals:
            f.write(json.dumps({"step": step, "split": "eval", "reward_mean": r, "accuracy": 0.0}) + "\n")


def test_windows_and_paired_gain(tmp_path) -> None:
    _write(tmp_path / "run.jsonl", [0.1, 0.2, 0.3, 0.4, 0.5], evals=[(2, 0.25), (5, 0.55)])
    _write(tmp_path / "base.jsonl", [0.1, 0.1, 0.1, 0.1, 0.1])
    train, evals = read_metrics(tmp_path / "run.jsonl")
    rows = curve_rows(train, evals, 2, read_metrics(tmp_path / "base.jsonl")[0])
    assert [(r["first_step"], r["last_step"]) for r in rows] == [(1, 2), (3, 4), (5, 5)]
    assert [r["reward_mean"] for r in rows] == pytest.approx([0.15, 0.35, 0.5])
    assert [r["accuracy"] for r in rows] == pytest.approx([0.075, 0.175, 0.25])
    assert rows[0]["eval_reward"] == 0.25 and rows[2]["eval_reward"] == 0.55
    assert [r["paired_gain"] for r in rows] == pytest.approx([0.05, 0.25, 0.4])
    table = format_rows(rows)
    assert "| 3-4 | 0.350 | 0.175 |  | 0.100 | +0.250 |" in table


def test_held_out_before_and_after(tmp_path) -> None:
    _write(tmp_path / "run.jsonl", [0.1, 0.2], evals=[(0, 0.5), (1, 0.55), (2, 0.625)])
    train, evals = read_metrics(tmp_path / "run.jsonl")
    assert held_out_summary(evals) == "held-out reward: 0.500 before (step 0) -> 0.625 at step 2 (+0.125)"
    assert held_out_summary({2: evals[2]}) == ""  # no evaluation before the first step


def test_paired_standard_error_by_hand(tmp_path) -> None:
    # differences after - before: 0.5, 0, 0, 0.5 -> mean 0.25, sd sqrt(1/12), SE sqrt(1/12)/2
    gain, se = paired_gain([0.0, 0.5, 1.0, 0.0], [0.5, 0.5, 1.0, 0.5])
    assert gain == pytest.approx(0.25) and se == pytest.approx((1 / 12) ** 0.5 / 2)
    path = tmp_path / "eval_rewards.jsonl"
    path.write_text(
        json.dumps({"step": 0, "kind": "greedy", "rewards": [0.0, 0.5, 1.0, 0.0]})
        + "\n"
        + json.dumps({"step": 2, "kind": "greedy", "rewards": [0.5, 0.5, 1.0, 0.5]})
        + "\n"
    )
    rewards = read_eval_rewards(path)
    evals = {0: {"reward_mean": 0.375}, 2: {"reward_mean": 0.625}}
    assert held_out_summary(evals, rewards) == (
        "held-out reward: 0.375 before (step 0) -> 0.625 at step 2 "
        "(+0.250 +- 0.144 paired SE over 4 examples, z 1.7)"
    )
    same = {("greedy", 0): [0.5, 1.0], ("greedy", 2): [0.5, 1.0]}
    assert held_out_summary({0: {"reward_mean": 0.75}, 2: {"reward_mean": 0.75}}, same).endswith(
        "(+0.000 +- 0.000 paired SE over 2 examples, identical per example)"
    )
    with pytest.raises(ValueError, match="same >= 2 examples"):
        paired_gain([0.1, 0.2], [0.3])


def test_bad_input_is_one_error_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "split": "train", "reward_mean": 0.5}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not a metrics record"):
        read_metrics(bad)
    res = run_command([sys.executable, "tools/reward_curve.py", str(bad)])
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in res.stderr
