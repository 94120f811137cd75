"""HumanEval (openai/human-eval): complete a Python function; pass@1 on its ``check`` function.

The model's code is appended to the problem's prompt (imports, helpers and the signature), so a
completion may give either the whole function or just its body. The single test is the problem's
``check(candidate)`` run on ``entry_point``.
"""

from __future__ import annotations

from typing import Any

from megatron_bgpo.tasks.code import CodeExample, CodeTask


class HumanEvalTask(CodeTask):
    name = "humaneval"
    table_column = "HumanEval"
    default_sources = {"test": "hf:openai/openai_humaneval"}

    def example_from_record(self, record: dict[str, Any]) -> CodeExample:
        prompt, entry_point, test = record["prompt"], record["entry_point"], record["test"]
        if not all(isinstance(v, str) and v for v in (prompt, entry_point, test)):
            raise TypeError("'prompt', 'entry_point' and 'test' must be non-empty strings")
        question = "Complete the following Python function.\n\n```python\n" + prompt.rstrip() + "\n```"
        canonical = record.get("canonical_solution")
        return CodeExample(
            id=str(record["task_id"]),
            question=question,
            tests=(test + f"\n\ncheck({entry_point})\n",),
            entry_point=entry_point,
            program_prefix=prompt,
            reference=prompt + canonical if isinstance(canonical, str) else None,
        )
