"""A tiny Sudoku run setup for training tests: data files, a SentencePiece tokenizer, a model config."""

from __future__ import annotations

import csv
from pathlib import Path

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.sudoku import generate_puzzles
from megatron_bgpo.tokenizer import train_sentencepiece
from megatron_bgpo.training.sft import reference_completion
from megatron_bgpo.training.tiny import TINY_TASK, tiny_config

DENSE_TASK = "sudoku_digit_share"


def make_tiny_run(root: Path) -> dict[str, str]:
    """Write train/eval CSVs (d1's Puzzle,Solution columns), a tokenizer and config.json under ``root``."""
    task = get_task(TINY_TASK)
    puzzles = generate_puzzles(40, seed=7)
    for name, rows in (("train.csv", puzzles[:32]), ("eval.csv", puzzles[32:])):
        with open(root / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Puzzle", "Solution"])
            writer.writerows((p.puzzle, p.solution) for p in rows)
    texts = [task.prompt_text(p) + reference_completion(task, p) for p in puzzles]
    tok = train_sentencepiece(texts, 400, root / "tokenizer")
    cfg = tiny_config(tok, d_model=64, layers=2)
    cfg.to_json(root / "config.json")
    return {
        "model": str(root / "config.json"),
        "tokenizer": str(root / "tokenizer"),
        "train": str(root / "train.csv"),
        "eval": str(root / "eval.csv"),
    }


def flags(files: dict[str, str], **overrides) -> list[str]:
    """Command-line flags of a small, fast run (override any with keyword=value)."""
    values = {
        "model": files["model"],
        "tokenizer": files["tokenizer"],
        "task": TINY_TASK,
        "train_data": files["train"],
        "eval_data": files["eval"],
        "eval_samples": 4,
        "rollout_batch_size": 4,
        "mini_batch_size": 4,
        "group_size": 2,
        "micro_batch_size": 4,
        "num_mc_samples": 2,
        "gen_length": 48,
        "block_length": 16,
        "diffusion_steps": 6,
        "max_prompt_length": 460,
        "lr": 1e-3,
        "train_steps": 4,
        "log_interval": 1,
        "seed": 3,
    }
    values.update(overrides)
    out: list[str] = []
    for k, v in values.items():
        if v is not None:
            out += ["--" + k.replace("_", "-"), str(v)]
    return out


def register_dense_task() -> None:
    """Register (in this forked rank only) Sudoku scored by the share of digits 1-4 in the completion.

    The untrained tiny model never writes an answer block, so the real reward is 0 everywhere, every group
    has zero variance and BGPO moves no weight; this dense reward makes BGPO updates non-trivial.
    """
    from megatron_bgpo.tasks import TASKS, Score, SudokuBriefTask

    class DigitShare(SudokuBriefTask):
        name = DENSE_TASK

        def _score(self, text: str, example) -> Score:
            reward = sum(ch in "1234" for ch in text) / max(len(text), 1)
            return Score(reward, False, None)

    TASKS[DENSE_TASK] = DigitShare
