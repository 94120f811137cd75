# ruff: noqa: E501 - hand-written expected prompts keep their natural line breaks
"""Prompt builders against hand-written expected strings (d1 formats inside LLaDA's chat template)."""

from __future__ import annotations

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.code import CodeExample
from megatron_bgpo.tasks.countdown import CountdownExample
from megatron_bgpo.tasks.gsm8k import MathExample
from megatron_bgpo.tasks.sudoku import SudokuExample

HEAD = "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n"
TAIL = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
Q = MathExample("q", "What is 2+3?", "5")


def test_gsm8k_eval_prompt_with_prefill() -> None:
    expected = (
        HEAD + "You are a math expert. You will be given a question to solve. Solve it step by step. "
        "Wrap the final answer in a \\boxed{}. \nRespond in the following format:\n<reasoning>\n"
        "Your reasoning here\n</reasoning>\n<answer>\n\\boxed{...}\n</answer>\n\nWhat is 2+3?"
        + TAIL
        + "<reasoning>"
    )
    task = get_task("gsm8k")
    assert task.prompt_text(Q, prefill=True) == expected
    assert task.prompt_text(Q) == expected[: -len("<reasoning>")]
    assert get_task("math500").prompt_text(Q, prefill=True) == expected


def test_gsm8k_and_math_train_prompts() -> None:
    assert get_task("gsm8k", prompt_style="train").build_messages(Q) == [
        {
            "role": "user",
            "content": "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n"
            "</answer>\n\n\nWhat is 2+3?",
        }
    ]
    assert get_task("math", prompt_style="train").prompt_text(Q) == (
        HEAD
        + "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n\n\n"
        "You are a math expert. You will be given a question to solve. Solve it step by step. Wrap the final "
        "answer in a \\boxed{}. \n\nWhat is 2+3?" + TAIL
    )


def test_countdown_prompts() -> None:
    ex = CountdownExample("c", (30, 100, 93), 23)
    assert get_task("countdown").prompt_text(ex, prefill=True) == (
        HEAD
        + "Using only the provided numbers, create an arithmetic expression that evaluates to exactly the "
        "provided target number. You may use the operations +, -, *, and / as needed, but each number must be "
        "used exactly once. Think step-by-step. After reasoning, provide only your final expression inside "
        "\\boxed{} tags without including an equals sign or the target number. For example: \\boxed{a + b * c}"
        "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n"
        "\\boxed{...}\n</answer>\n\nNumbers: [30, 100, 93]\nTarget: 23" + TAIL + "<reasoning>"
    )
    assert get_task("countdown", prompt_style="train").prompt_text(ex) == (
        HEAD
        + "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n\n"
        "Using only the numbers [30, 100, 93], create an arithmetic expression that evaluates to exactly 23. "
        "You must use all numbers from the list, and each number must be used exactly once. You may use the "
        "operations +, -, *, and / as needed. After reasoning, provide only your final expression inside "
        "<answer></answer> tags without including an equals sign or the target number. For example, if the "
        "numbers are [2, 3, 4] and the target is 5, a valid answer is: <answer>\n2*4-3\n</answer>" + TAIL
    )


def test_sudoku_prompt() -> None:
    ex = SudokuExample("s", "3102200002100320", "3142243142131324")
    expected = (
        HEAD
        + "Please solve the following 4x4 Sudoku puzzle. The puzzle is provided as a 16-character string "
        "reading left-to-right, top-to-bottom, where '0' represents empty cells.\n\nRules:\n"
        "- Fill empty cells with digits 1-4\n- Each row must contain digits 1-4 exactly once\n"
        "- Each column must contain digits 1-4 exactly once\n- Each 2x2 box must contain digits 1-4 exactly once\n\n"
        "Important: Your solution must be a COMPLETE 16-character string with only the digits 1-4, representing "
        "your final solved grid.\n\nRespond in this exact format:\n<reasoning>\nYour step-by-step solving process\n"
        "</reasoning>\n<answer>\n[16-character solution string with no spaces or separators]\n</answer>\n\n\n"
        "Solve the following Sudoku puzzle: 3102200002100320" + TAIL + "<reasoning>"
    )
    assert get_task("sudoku").prompt_text(ex, prefill=True) == expected
    assert get_task("sudoku", prompt_style="train").prompt_text(ex, prefill=True) == expected


def test_sudoku_brief_prompt_keeps_only_the_puzzle_line_and_the_reward() -> None:
    ex = SudokuExample("s", "3102200002100320", "3142243142131324")
    brief = get_task("sudoku_brief")
    assert brief.prompt_text(ex) == HEAD + "Solve the following Sudoku puzzle: 3102200002100320" + TAIL
    completion = "<reasoning>\n</reasoning>\n<answer>\n3142243142131320\n</answer>"  # 1 of 8 cells wrong
    assert brief.reward(completion, ex) == get_task("sudoku").reward(completion, ex) == 7 / 8


CODE_HEAD = (
    HEAD
    + "You are a coding expert. You will be given a coding problem to solve. Solve it step by step. Put your "
    "complete solution in a single ```python code block inside the answer.\nRespond in the following format:\n"
    "<reasoning>\nYour reasoning here\n</reasoning>\n<answer>\n```python\n...\n```\n</answer>\n\n"
)


def test_humaneval_and_mbpp_prompts() -> None:
    he = get_task("humaneval").load(
        [{"task_id": "HumanEval/0", "prompt": "def f(x):\n    \"\"\"Double x.\"\"\"\n", "entry_point": "f",
          "canonical_solution": "    return 2 * x\n", "test": "def check(c):\n    assert c(2) == 4\n"}]
    )[0]  # fmt: skip
    assert get_task("humaneval").prompt_text(he, prefill=True) == (
        CODE_HEAD
        + 'Complete the following Python function.\n\n```python\ndef f(x):\n    """Double x."""\n```'
        + TAIL
        + "<reasoning>"
    )
    mb = get_task("mbpp").load(
        [{"task_id": 11, "text": "Write a function to add one.", "code": "def inc(x):\n    return x + 1",
          "test_list": ["assert inc(1) == 2", "assert inc(2) == 3"], "test_setup_code": "", "challenge_test_list": []}]
    )[0]  # fmt: skip
    assert get_task("mbpp").prompt_text(mb) == (
        CODE_HEAD
        + "You are an expert Python programmer, and here is your task: Write a function to add one. "
        "Your code should pass these tests:\n\nassert inc(1) == 2\nassert inc(2) == 3" + TAIL
    )
    generic = CodeExample("g", "Reverse a string.", ("assert rev('ab') == 'ba'",))
    assert get_task("code").prompt_text(generic) == CODE_HEAD + "Reverse a string." + TAIL
