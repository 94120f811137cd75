"""The task interface shared by all benchmarks, answer extraction and crash-safe scoring.

A task turns records into typed examples (:meth:`Task.load`), examples into d1-style prompts
(:meth:`Task.build_messages`, :meth:`Task.prompt_text`) and a completion into a :class:`Score`
(:meth:`Task.score`). ``reward``/``rewards`` are the float views used by the trainer. Scoring never
raises: a crash is logged with the sample and scored 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from megatron_bgpo.tasks.io import LoadedData, load_examples

logger = logging.getLogger(__name__)

PromptStyle = Literal["eval", "train"]
Message = dict[str, str]

# Decoded LLaDA special tokens that may trail a completion (EOS padding, end of turn, leftover masks).
_SPECIAL_TOKENS = re.compile(r"<\|(?:endoftext|eot_id|mdm_mask|startoftext)\|>")
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


@dataclass
class Score:
    """The reward of one completion, whether it counts as correct, and what was extracted."""

    reward: float
    correct: bool
    extracted: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def clean_completion(text: str) -> str:
    """Drop decoded special tokens (``<|endoftext|>`` padding, ``<|eot_id|>``, ``<|mdm_mask|>``)."""
    return _SPECIAL_TOKENS.sub("", text)


def answer_block(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` (an unclosed last ``<answer>`` runs to the end)."""
    matches = _ANSWER.findall(text)
    return matches[-1].strip() if matches else None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, else None."""
    for macro in ("\\boxed", "\\fbox"):
        start = text.rfind(macro)
        while start >= 0:
            i = start + len(macro)
            while i < len(text) and text[i] == " ":
                i += 1
            if i < len(text) and text[i] == "{":
                depth, j = 0, i
                while j < len(text):
                    if text[j] == "{":
                        depth += 1
                    elif text[j] == "}":
                        depth -= 1
                        if depth == 0:
                            return text[i + 1 : j].strip()
                    j += 1
            start = text.rfind(macro, 0, start)
    return None


def extract_final_answer(text: str) -> str | None:
    """The final answer of a d1-format completion.

    Inside the last ``<answer>`` block: its last ``\\boxed{}`` if any, else the whole block. Without
    an answer block: the last ``\\boxed{}`` anywhere. The prompt's ``\\boxed{...}`` placeholder does
    not count as an answer.
    """

    def real(s: str | None) -> str | None:
        return None if s is None or not s.strip() or set(s.strip()) <= {"."} else s.strip()

    block = answer_block(text)
    if block is not None:
        boxed = last_boxed(block)
        return real(boxed) if boxed is not None else real(block)
    return real(last_boxed(text))


def math_verify_timeouts() -> bool:
    """math-verify's timeouts use SIGALRM, which only the main thread may set."""
    import threading

    return threading.current_thread() is threading.main_thread()


class Task[E](ABC):
    """Base class of every task. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]
    #: Column of the paper's Table 1 this task fills (None: not a Table-1 benchmark).
    table_column: ClassVar[str | None] = None
    #: Table-1 metric: "accuracy" (share of correct completions) or "mean_reward".
    table_metric: ClassVar[Literal["accuracy", "mean_reward"]] = "accuracy"
    #: Default source of each split (a local path or an ``hf:`` name); None: no default.
    default_sources: ClassVar[dict[str, str]] = {}

    def __init__(self, prompt_style: PromptStyle = "eval") -> None:
        if prompt_style not in ("eval", "train"):
            raise ValueError(f"prompt_style must be 'eval' or 'train', got {prompt_style!r}")
        self.prompt_style = prompt_style

    # ---- data ------------------------------------------------------------------------------
    @abstractmethod
    def example_from_record(self, record: dict[str, Any]) -> E:
        """Convert one raw record; raise KeyError/ValueError/TypeError when it is malformed."""

    def keep(self, example: E, split: str) -> bool:
        """Whether ``example`` belongs to ``split`` (for files that hold several splits)."""
        return True

    def load(
        self,
        source: str | os.PathLike | Sequence[dict[str, Any]] | None = None,
        *,
        split: str = "test",
        limit: int | None = None,
        skip_malformed: bool = False,
    ) -> LoadedData[E]:
        """Load examples from a local file, an ``hf:`` name, or a list of dicts.

        Examples without an id in the data are named ``<task>-<position>`` (position among records).
        """
        if source is None:
            if split not in self.default_sources:
                raise ValueError(f"task {self.name!r} has no default source for split {split!r}; pass one")
            source = self.default_sources[split]

        def convert(record: dict[str, Any], position: int) -> E:
            example = self.example_from_record(record)
            if getattr(example, "id", None) == "":  # no id in the data: name it by position
                example = dataclasses.replace(example, id=f"{self.name}-{position}")  # type: ignore[type-var]
            return example

        return load_examples(
            source,
            convert,
            split=split,
            skip_malformed=skip_malformed,
            limit=limit,
            keep=lambda ex: self.keep(ex, split),
        )

    # ---- prompts ---------------------------------------------------------------------------
    @abstractmethod
    def build_messages(self, example: E) -> list[Message]:
        """The chat messages of the prompt (d1 formats, spec §4.5)."""

    def prompt_text(self, example: E, prefill: bool = False) -> str:
        """The prompt rendered with LLaDA's chat template; ``prefill`` appends ``<reasoning>`` (eval)."""
        # Imported here: the tokenizer package pulls in torch, which scoring does not need.
        from megatron_bgpo.tokenizer.chat import REASONING_PREFILL, render_chat

        return render_chat(self.build_messages(example), prefill=REASONING_PREFILL if prefill else "")

    # ---- rewards ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def max_reward(self) -> float:
        """The largest reward a completion can get under the configured reward mode."""

    @abstractmethod
    def _score(self, text: str, example: E) -> Score:
        """Score an already cleaned completion; may raise (the caller turns that into 0)."""

    def score(self, completion: str, example: E) -> Score:
        """Score one completion; a crash is logged with the sample and scored 0, never raised."""
        try:
            return self._score(clean_completion(completion), example)
        except Exception as exc:  # noqa: BLE001 - a reward bug must not kill training
            return self._crashed(exc, completion, example)

    def _crashed(self, exc: BaseException, completion: str, example: E) -> Score:
        logger.error(
            "reward of task %s crashed (%s: %s); scored 0. example=%r completion=%r",
            self.name,
            type(exc).__name__,
            exc,
            example,
            completion[:2000],
            exc_info=exc,
        )
        return Score(0.0, False, None, {"error": f"{type(exc).__name__}: {exc}"})

    def score_batch(self, completions: Sequence[str], examples: Sequence[E]) -> list[Score]:
        """Score many completions (code tasks run them in parallel)."""
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
        return [self.score(c, e) for c, e in zip(completions, examples, strict=True)]

    def reward(self, completion: str, example: E) -> float:
        return self.score(completion, example).reward

    def rewards(self, completions: Sequence[str], examples: Sequence[E]) -> list[float]:
        return [s.reward for s in self.score_batch(completions, examples)]
