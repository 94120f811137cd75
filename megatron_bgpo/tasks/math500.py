"""MATH (competition mathematics): ``math`` for training files, ``math500`` for the MATH-500 test set.

Accepted record layouts: MATH-500 (``problem``, ``answer``, ``solution``, ``level``, ``subject``,
``unique_id``); the verl RL layout (``problem`` with an appended "Let's think step by step ..."
sentence, which is removed, and ``reward_model.ground_truth``); raw MATH / ``ankner/math-500``
(``problem``, worked ``solution`` whose last ``\\boxed{}`` is the answer).
"""

from __future__ import annotations

from typing import Any

from megatron_bgpo.tasks import prompts
from megatron_bgpo.tasks.base import Message, PromptStyle, Task, last_boxed
from megatron_bgpo.tasks.gsm8k import MathExample, MathRewardMixin, RewardMode

_VERL_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."


def _reference_answer(record: dict[str, Any]) -> str:
    if isinstance(record.get("answer"), str) and record["answer"].strip():
        return record["answer"].strip()
    reward_model = record.get("reward_model")
    if isinstance(reward_model, dict) and reward_model.get("ground_truth") not in (None, ""):
        return str(reward_model["ground_truth"]).strip()
    solution = record.get("solution")
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed:
            return boxed
        if solution.strip() and "\n" not in solution.strip() and len(solution) < 200:
            return solution.strip()  # a final answer only
    raise ValueError("no reference answer ('answer', 'reward_model.ground_truth' or a \\boxed{} solution)")


class MathTask(MathRewardMixin, Task[MathExample]):
    name = "math"
    default_sources = {"train": "hf:ankner/math-500", "test": "hf:HuggingFaceH4/MATH-500"}
    format_terms = ("boxed_in_answer",)

    def __init__(self, prompt_style: PromptStyle = "eval", reward_mode: RewardMode = "accuracy") -> None:
        super().__init__(prompt_style)
        self._init_reward(reward_mode)

    def example_from_record(self, record: dict[str, Any]) -> MathExample:
        problem = record["problem"]
        if not isinstance(problem, str) or not problem.strip():
            raise TypeError("'problem' must be a non-empty string")
        problem = problem.strip()
        if problem.endswith(_VERL_SUFFIX):
            problem = problem[: -len(_VERL_SUFFIX)].rstrip()
        solution = record.get("solution")
        return MathExample(
            id=str(record.get("unique_id") or record.get("id") or ""),
            question=problem,
            answer=_reference_answer(record),
            solution=solution if isinstance(solution, str) else None,
            level=record.get("level"),
            subject=record.get("subject") or record.get("type"),
        )

    def build_messages(self, example: MathExample) -> list[Message]:
        if self.prompt_style == "eval":
            return prompts.user(prompts.MATH_EVAL + "\n\n" + example.question)
        return prompts.user(prompts.D1_FORMAT + "\n\n" + prompts.MATH_TRAIN + "\n\n" + example.question)


class Math500Task(MathTask):
    name = "math500"
    table_column = "MATH500"
    default_sources = {"test": "hf:HuggingFaceH4/MATH-500"}
