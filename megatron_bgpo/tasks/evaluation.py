"""Score already generated completions, print the paper's Table-1 layout, write JSONL.

``tools/eval.py`` (generation with the diffusion sampler) is a thin CLI over this module:
select examples (:func:`select_examples`), build prompts (``task.prompt_text(ex, prefill=True)``),
generate, then :func:`score_generations` per task, :func:`write_jsonl` and :func:`format_table`.

Table-1 metric per column: accuracy (share of completions that are fully correct) for MATH500,
GSM8K, HumanEval, MBPP (pass@1) and Countdown; mean cell accuracy for Sudoku (d1's metric).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_bgpo.tasks.base import Task

REASONING_PREFILL = "<reasoning>"  # == megatron_bgpo.tokenizer.chat.REASONING_PREFILL (tested)

TABLE1_COLUMNS = ("MATH500", "GSM8K", "HumanEval", "MBPP", "Sudoku", "Countdown")

# BGPO paper, Table 1 (accuracy %), for side-by-side printing (spec §5.7).
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "LLaDA-8B-Instruct (paper)": {
        "MATH500": 39.6, "GSM8K": 79.3, "HumanEval": 45.1, "MBPP": 39.1, "Sudoku": 12.0, "Countdown": 19.5,
    },
    "+ BGPO (paper)": {
        "MATH500": 45.7, "GSM8K": 84.3, "HumanEval": 47.6, "MBPP": 41.7, "Sudoku": 26.9, "Countdown": 87.5,
    },
}  # fmt: skip


@dataclass
class TaskEvaluation:
    """Scores of one task: counts, accuracy, mean reward, the Table-1 metric and per-sample records."""

    task: str
    column: str | None
    n: int
    accuracy: float
    mean_reward: float
    metric: float
    records: list[dict[str, Any]] = field(default_factory=list)


def select_examples[T](examples: Sequence[T], limit: int | None = None, seed: int | None = None) -> list[T]:
    """The first ``limit`` examples, or with ``seed`` a random subset of ``limit`` (in original order)."""
    items = list(examples)
    if limit is None or limit >= len(items):
        return items
    if seed is None:
        return items[:limit]
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def score_generations(
    task: Task,
    examples: Sequence[Any],
    completions: Sequence[str],
    *,
    prompts: Sequence[str] | None = None,
    prefill: str = REASONING_PREFILL,
) -> TaskEvaluation:
    """Score ``completions`` (generated after a prompt that ended with ``prefill``).

    The prefill is put back in front of each completion before scoring, so that format rewards see
    the whole response. Pass ``prefill=""`` for prompts generated without one.
    """
    if len(completions) != len(examples) or (prompts is not None and len(prompts) != len(examples)):
        raise ValueError("examples, completions (and prompts) must have the same length")
    scores = task.score_batch([prefill + c for c in completions], examples)
    records = []
    for i, (example, completion, score) in enumerate(zip(examples, completions, scores, strict=True)):
        record: dict[str, Any] = {"task": task.name, "index": i, "id": getattr(example, "id", str(i))}
        if prompts is not None:
            record["prompt"] = prompts[i]
        record.update(
            completion=completion,
            reward=score.reward,
            correct=score.correct,
            extracted=score.extracted,
            info=score.info,
        )
        records.append(record)
    n = len(scores)
    accuracy = sum(s.correct for s in scores) / n if n else 0.0
    mean_reward = sum(s.reward for s in scores) / n if n else 0.0
    metric = accuracy if task.table_metric == "accuracy" else mean_reward
    return TaskEvaluation(task.name, task.table_column, n, accuracy, mean_reward, metric, records)


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Write one JSON object per line (creating parent folders); return the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def table_row(evaluations: Iterable[TaskEvaluation]) -> dict[str, float]:
    """Table-1 cells (percent) of the evaluated tasks that have a Table-1 column."""
    return {e.column: 100.0 * e.metric for e in evaluations if e.column is not None}


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str] = TABLE1_COLUMNS,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """A Markdown table in Table 1's layout: one row per model, cells in percent, '–' if missing.

    ``reference`` rows (e.g. :data:`PAPER_TABLE1`) are printed first.
    """
    all_rows = {**(reference or {}), **rows}
    width = max([len("model")] + [len(name) for name in all_rows])
    lines = [
        "| " + "model".ljust(width) + " | " + " | ".join(columns) + " |",
        "|" + "-" * (width + 2) + "|" + "|".join("-" * (len(c) + 2) for c in columns) + "|",
    ]
    for name, cells in all_rows.items():
        values = [(f"{cells[c]:.1f}" if c in cells else "–").rjust(len(c)) for c in columns]
        lines.append("| " + name.ljust(width) + " | " + " | ".join(values) + " |")
    return "\n".join(lines)


def evaluate_generations(
    runs: Sequence[tuple[Task, Sequence[Any], Sequence[str]]],
    *,
    model_name: str = "model",
    jsonl_path: str | os.PathLike | None = None,
    prefill: str = REASONING_PREFILL,
    with_paper: bool = True,
) -> tuple[list[TaskEvaluation], str]:
    """Score ``(task, examples, completions)`` runs; write all records; return them and the table."""
    evaluations = [score_generations(task, ex, comp, prefill=prefill) for task, ex, comp in runs]
    if jsonl_path is not None:
        write_jsonl(jsonl_path, (r for e in evaluations for r in e.records))
    table = format_table({model_name: table_row(evaluations)}, reference=PAPER_TABLE1 if with_paper else None)
    return evaluations, table
