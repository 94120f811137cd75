"""The README's main command, shortened: examples/bgpo_tiny_cpu.sh with 2 SFT and 2 BGPO steps, through
real torchrun launches (the one end-to-end test of the entry points)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.commands import run_command, torchrun

SAMPLING = ["--gen-length", "32", "--diffusion-steps", "8", "--block-length", "32", "--params-dtype", "fp32"]


def test_tiny_cpu_example_runs_end_to_end(tmp_path: Path) -> None:
    proc = run_command(
        ["bash", "examples/bgpo_tiny_cpu.sh"],
        timeout=900,
        OUT=str(tmp_path),
        SFT_STEPS="2",
        BGPO_STEPS="2",
        EVAL_SAMPLES="8",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[train] step 2/2" in proc.stdout and "[eval] step 2/2" in proc.stdout
    assert "| 1-2 | " in proc.stdout  # the reward curve printed at the end (one 5-step window)
    records = [json.loads(line) for line in (tmp_path / "bgpo" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(0.0 <= r["reward_mean"] <= 1.0 for r in train)
    assert (tmp_path / "bgpo" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (tmp_path / "bgpo" / "tokenizer").is_dir() and (tmp_path / "bgpo" / "config.json").is_file()

    # The trained checkpoint serves the evaluation and generation CLIs.
    ckpt, out = str(tmp_path / "bgpo"), tmp_path / "eval.jsonl"
    proc = torchrun(
        "tools/eval.py",
        "--load",
        ckpt,
        "--task",
        f"sudoku={tmp_path / 'base' / 'eval.csv'}",
        "--limit",
        "2",
        "--output",
        str(out),
        *SAMPLING,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sudoku: n=2" in proc.stdout and "Sudoku" in proc.stdout  # per-task line and the Table-1 header
    assert len(out.read_text().splitlines()) == 2
    proc = torchrun(
        "tools/generate.py",
        "--load",
        ckpt,
        "--prompt",
        "Solve 1234",
        "--prefix-cache",
        "--threshold",
        "0.9",
        *SAMPLING,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "### Solve 1234" in proc.stdout and "denoiser calls]" in proc.stdout
