"""Tasks, prompts and rewards: GSM8K, MATH/MATH500, Countdown, Sudoku, HumanEval, MBPP, generic code.

``get_task(name, **options)`` builds a task from the registry :data:`TASKS`. Every task offers
``load`` (local file / ``hf:`` name / list of dicts -> typed examples), ``build_messages`` and
``prompt_text`` (d1 prompts in LLaDA's chat template), and ``score``/``reward``/``rewards``
(never raising). See ``docs/tasks.md``.
"""

from __future__ import annotations

from typing import Any

from megatron_bgpo.tasks.base import Score, Task
from megatron_bgpo.tasks.code import CodeExample, CodeTask
from megatron_bgpo.tasks.countdown import CountdownExample, CountdownTask
from megatron_bgpo.tasks.gsm8k import GSM8KTask, MathExample
from megatron_bgpo.tasks.humaneval import HumanEvalTask
from megatron_bgpo.tasks.io import LoadedData, LoadReport, MalformedRecordError
from megatron_bgpo.tasks.math500 import Math500Task, MathTask
from megatron_bgpo.tasks.mbpp import MBPPTask
from megatron_bgpo.tasks.rewards import gather_rewards, gather_scores
from megatron_bgpo.tasks.sudoku import SudokuBriefTask, SudokuExample, SudokuTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        GSM8KTask, MathTask, Math500Task, CountdownTask, SudokuTask, SudokuBriefTask,
        HumanEvalTask, MBPPTask, CodeTask,
    )
}  # fmt: skip


def get_task(name: str, **options: Any) -> Task:
    """Build the task registered as ``name`` (case-insensitive) with its constructor ``options``."""
    key = name.lower()
    if key not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[key](**options)


__all__ = [
    "TASKS",
    "CodeExample",
    "CodeTask",
    "CountdownExample",
    "CountdownTask",
    "GSM8KTask",
    "HumanEvalTask",
    "LoadReport",
    "LoadedData",
    "MBPPTask",
    "MalformedRecordError",
    "Math500Task",
    "MathExample",
    "MathTask",
    "Score",
    "SudokuBriefTask",
    "SudokuExample",
    "SudokuTask",
    "Task",
    "gather_rewards",
    "gather_scores",
    "get_task",
]
