"""Prompt texts (spec §4.5). The math, Countdown and Sudoku texts are d1's, verbatim, quirks included
(e.g. the missing space before "Respond" in the Countdown evaluation prompt).

Two styles per task: ``eval`` — d1's evaluation prompts (``eval/*.py``), which ask for ``\\boxed{}``
inside ``<answer>`` for math and Countdown, and are used with the ``<reasoning>`` prefill; ``train``
— d1's diffu-GRPO training prompts (``diffu-grpo/data_utils.py``). Every prompt is one user turn.
d1 published no coding prompt; ours follows the same scaffold and asks for one fenced Python block
inside ``<answer>``.
"""

from __future__ import annotations

# d1 diffu-grpo SYSTEM_PROMPT (training).
D1_FORMAT = "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n"

# d1 eval GSM_SYSTEM_PROMPT (GSM8K and MATH500 evaluation).
MATH_EVAL = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}. \n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n\\boxed{...}\n</answer>"
)

# d1 diffu-grpo MATH training instruction (after D1_FORMAT).
MATH_TRAIN = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}. "
)

# d1 eval CTD_SYSTEM_PROMPT.
COUNTDOWN_EVAL = (
    "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the "
    "provided target number. You may use the operations +, -, *, and / as needed, but each number must "
    "be used exactly once. Think step-by-step. After reasoning, provide only your final expression inside "
    "\\boxed{} tags without including an equals sign or the target number. For example: \\boxed{a + b * c}"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n\\boxed{...}\n</answer>"
)

# d1 diffu-grpo Countdown training instruction (after D1_FORMAT and a newline).
COUNTDOWN_TRAIN = (
    "Using only the numbers {numbers}, create an arithmetic expression that evaluates to exactly "
    "{target}. You must use all numbers from the list, and each number must be used exactly once. You "
    "may use the operations +, -, *, and / as needed. After reasoning, provide only your final "
    "expression inside <answer></answer> tags without including an equals sign or the target number. "
    "For example, if the numbers are [2, 3, 4] and the target is 5, a valid answer is: "
    "<answer>\n2*4-3\n</answer>"
)

# d1 SUDOKU_SYSTEM_PROMPT (training and evaluation).
SUDOKU = (
    "\nPlease solve the following 4x4 Sudoku puzzle. The puzzle is provided as a 16-character string "
    "reading left-to-right, top-to-bottom, where '0' represents empty cells.\n\n"
    "Rules:\n- Fill empty cells with digits 1-4\n- Each row must contain digits 1-4 exactly once\n"
    "- Each column must contain digits 1-4 exactly once\n"
    "- Each 2x2 box must contain digits 1-4 exactly once\n\n"
    "Important: Your solution must be a COMPLETE 16-character string with only the digits 1-4, "
    "representing your final solved grid.\n\n"
    "Respond in this exact format:\n<reasoning>\nYour step-by-step solving process\n</reasoning>\n"
    "<answer>\n[16-character solution string with no spaces or separators]\n</answer>\n"
)

# Ours (d1 has none public): coding, in the same scaffold.
CODE = (
    "You are a coding expert. You will be given a coding problem to solve. Solve it step by step. "
    "Put your complete solution in a single ```python code block inside the answer.\n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n```python\n...\n```\n</answer>"
)


def user(content: str) -> list[dict[str, str]]:
    """A one-turn conversation."""
    return [{"role": "user", "content": content}]
