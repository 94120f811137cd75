"""GSM8K: grade-school math word problems with a numeric final answer after ``####``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from megatron_bgpo.tasks import formats, prompts
from megatron_bgpo.tasks.base import Message, PromptStyle, Score, Task, extract_final_answer
from megatron_bgpo.tasks.mathcheck import math_equal

RewardMode = Literal["accuracy", "d1"]


@dataclass(frozen=True)
class MathExample:
    """A math problem and its reference final answer (GSM8K, MATH)."""

    id: str
    question: str
    answer: str
    solution: str | None = None
    level: str | None = None
    subject: str | None = None


def gsm8k_final_answer(solution: str) -> str:
    """The reference answer after ``####``, without thousands separators."""
    if "####" not in solution:
        raise ValueError("GSM8K answer has no '####' final answer")
    return solution.split("####")[-1].strip().replace(",", "")


class MathRewardMixin:
    """Correctness via math-verify on the extracted final answer, plus d1's optional format terms.

    ``reward_mode="accuracy"`` (default): 1.0 if correct else 0.0. ``"d1"``: d1's sum — correctness
    2.0 plus the format rewards of :mod:`megatron_bgpo.tasks.formats` (GSM8K: xml-count, soft, strict,
    integer: max 4.0; MATH: boxed-in-answer: max 3.0). Correct means equivalent to the reference under
    math-verify (d1 compares GSM8K strings exactly).
    """

    reward_mode: RewardMode
    format_terms: ClassVar[tuple[str, ...]] = ()

    def _init_reward(self, reward_mode: RewardMode) -> None:
        if reward_mode not in ("accuracy", "d1"):
            raise ValueError(f"reward_mode must be 'accuracy' or 'd1', got {reward_mode!r}")
        self.reward_mode = reward_mode

    @property
    def max_reward(self) -> float:
        if self.reward_mode == "accuracy":
            return 1.0
        return 2.0 + sum({"xml_count": 0.5, "boxed_in_answer": 1.0}.get(t, 0.5) for t in self.format_terms)

    def _score(self, text: str, example: MathExample) -> Score:
        extracted = extract_final_answer(text)
        correct = math_equal(extracted, example.answer)
        if self.reward_mode == "accuracy":
            return Score(1.0 if correct else 0.0, correct, extracted)
        terms = {name: getattr(formats, name)(text) for name in self.format_terms}
        return Score(2.0 * correct + sum(terms.values()), correct, extracted, {"format": terms})


class GSM8KTask(MathRewardMixin, Task[MathExample]):
    name = "gsm8k"
    table_column = "GSM8K"
    default_sources = {"train": "hf:openai/gsm8k:main", "test": "hf:openai/gsm8k:main"}
    format_terms = ("xml_count", "soft_format", "strict_format", "integer_answer")

    def __init__(self, prompt_style: PromptStyle = "eval", reward_mode: RewardMode = "accuracy") -> None:
        super().__init__(prompt_style)
        self._init_reward(reward_mode)

    def example_from_record(self, record: dict[str, Any]) -> MathExample:
        question, solution = record["question"], record["answer"]
        if not isinstance(question, str) or not isinstance(solution, str):
            raise TypeError("'question' and 'answer' must be strings")
        return MathExample(str(record.get("id", "")), question, gsm8k_final_answer(solution), solution)

    def build_messages(self, example: MathExample) -> list[Message]:
        if self.prompt_style == "eval":
            return prompts.user(prompts.MATH_EVAL + "\n\n" + example.question)
        return prompts.user(prompts.D1_FORMAT + "\n\n" + example.question)
