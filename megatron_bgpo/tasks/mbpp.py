"""MBPP (Austin et al. 2021): write a Python function from a description and three example asserts.

Prompt: the MBPP paper's ("You are an expert Python programmer, and here is your task: ... Your
code should pass these tests:") inside our code scaffold. Tests: the three ``test_list`` asserts
(plus ``challenge_test_list`` with ``challenge_tests=True``), after ``test_setup_code``. The full
file holds every split; ``split`` selects by task id as usual: prompt 1-10, test 11-510,
validation 511-600, train 601-974, ``all`` everything.
"""

from __future__ import annotations

from typing import Any

from megatron_bgpo.tasks.code import CodeExample, CodeTask, tested_definition

SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


class MBPPTask(CodeTask):
    name = "mbpp"
    table_column = "MBPP"
    default_sources = {
        "test": "hf:google-research-datasets/mbpp:full",
        "train": "hf:google-research-datasets/mbpp:full",
    }

    def __init__(self, *args: Any, challenge_tests: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.challenge_tests = challenge_tests

    def example_from_record(self, record: dict[str, Any]) -> CodeExample:
        text, tests = record["text"] if "text" in record else record["prompt"], record["test_list"]
        if not isinstance(text, str) or not isinstance(tests, list) or not tests:
            raise TypeError("'text' must be a string and 'test_list' a non-empty list")
        shown = "\n".join(tests)
        if self.challenge_tests:
            tests = tests + list(record.get("challenge_test_list") or [])
        question = (
            f"You are an expert Python programmer, and here is your task: {text} "
            f"Your code should pass these tests:\n\n{shown}"
        )
        code = record.get("code")
        code = code if isinstance(code, str) else None
        return CodeExample(
            id=f"mbpp/{int(record['task_id'])}",
            question=question,
            tests=tuple(str(t) for t in tests),
            test_setup=str(record.get("test_setup_code") or ""),
            entry_point=tested_definition(code, tests),
            reference=code,
        )

    def keep(self, example: CodeExample, split: str) -> bool:
        if split not in SPLITS:
            return True  # "all", or a file that is already one split
        low, high = SPLITS[split]
        return low <= int(example.id.split("/")[-1]) <= high
