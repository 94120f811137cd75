"""Countdown (safe parser, d1 values, every test target solved) and Sudoku (grids, generator, rewards)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.countdown import CountdownExample, ExpressionError, evaluate_expression, solve
from megatron_bgpo.tasks.sudoku import (
    SudokuExample,
    all_grids,
    generate_puzzles,
    is_valid_grid,
    solutions,
)

EX = CountdownExample("c", (30, 100, 93), 23)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "open('x')",
        "(1).__class__",
        "2 ** 10",
        "x + 1",
        "[1, 2]",
        "1 if 1 else 2",
        "1.5 + 2",
        "1 // 2",
        "1 % 2",
        "lambda: 1",
        "(" * 300 + "1" + ")" * 300,
        "9" * 201,
        "1 / 0",
        "1 / (3 - 3)",
        "",
    ],
)
def test_parser_rejects_everything_but_arithmetic(text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate_expression(text)


def test_parser_evaluates_exactly() -> None:
    assert evaluate_expression("(1 + 2) / 3") == (Fraction(1), [1, 2, 3])
    assert evaluate_expression("-3 + 4*(2/8)") == (Fraction(-2), [3, 4, 2, 8])
    assert evaluate_expression("1/3 + 1/3 + 1/3") == (Fraction(1), [1, 3, 1, 3, 1, 3])


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<reasoning>...</reasoning><answer>\\boxed{93 + (30 - 100)}</answer>", 1.0),
        ("<answer>\n93 - 100 + 30\n</answer>", 1.0),  # d1's training format: bare expression
        ("<answer>\\boxed{93 + 30 - 100 = 23}</answer>", 0.1),  # '=' is not allowed
        ("<answer>\\boxed{93 + 30 + 100}</answer>", 0.1),  # wrong value
        ("<answer>\\boxed{93 - 70}</answer>", 0.1),  # wrong numbers
        ("<answer>\\boxed{93 + 30 - 100 + 0}</answer>", 0.1),  # extra number
        ("<answer>\\boxed{__import__('os')}</answer>", 0.1),
        ("93 + 30 - 100", 0.0),  # no answer block
        ("<answer></answer>", 0.0),
    ],
)
def test_countdown_reward_values(completion: str, reward: float) -> None:
    assert get_task("countdown").reward(completion, EX) == reward


def test_every_countdown_test_target_is_solved(data_dir: Path) -> None:
    task = get_task("countdown")
    examples = list(task.load(data_dir / "d1_countdown_cd3_test.jsonl"))
    assert len(examples) == 256 and all(len(e.numbers) == 3 for e in examples)
    expressions = [solve(e.numbers, e.target) for e in examples]
    assert None not in expressions
    completions = [f"<reasoning>search</reasoning>\n<answer>\n\\boxed{{{x}}}\n</answer>" for x in expressions]
    assert task.rewards(completions, examples) == [1.0] * 256
    assert sum(
        task.reward(f"<answer>\\boxed{{{x}+1}}</answer>", e)
        for x, e in zip(expressions, examples, strict=True)
    ) == (pytest.approx(0.1 * 256))


def test_countdown_train_file_three_numbers(data_dir: Path) -> None:
    data = get_task("countdown", n_numbers=3).load(
        data_dir / "countdown_tinyzero_train.parquet", split="train"
    )
    assert len(data) == 3926 and data.report.n_skipped == 0
    assert all(len(e.numbers) == 3 for e in data)


def test_all_grids_and_generator() -> None:
    grids = all_grids()
    assert len(grids) == 288 == len(set(grids)) and all(is_valid_grid(g) for g in grids)
    puzzles = generate_puzzles(50, n_empty=8, seed=3)
    assert len({p.puzzle for p in puzzles}) == 50
    for p in puzzles:
        assert p.puzzle.count("0") == 8 and solutions(p.puzzle) == [p.solution]
    ranged = generate_puzzles(20, n_empty=(4, 10), seed=4)
    assert all(4 <= p.puzzle.count("0") <= 10 and len(solutions(p.puzzle)) == 1 for p in ranged)
    assert generate_puzzles(5, seed=9) == generate_puzzles(5, seed=9)


def test_sudoku_reward_values() -> None:
    task = get_task("sudoku")
    ex = SudokuExample("s", "3102200002100320", "3142243142131324")
    assert task.reward("<answer>\n3142\n2431\n4213\n1324\n</answer>", ex) == 1.0
    assert task.reward("<answer>3142243142131324999</answer>", ex) == 1.0  # truncated to 16
    assert task.reward("<answer>3142</answer>", ex) == 1 / 8  # padded with 0; one empty cell in row 1
    assert task.reward("3142243142131324", ex) == 0.0  # no answer block
    assert task.reward("<answer>\\boxed{3142243142131324}</answer>", ex) == 1.0


def test_every_sudoku_test_solution_and_one_wrong_cell(data_dir: Path) -> None:
    task = get_task("sudoku")
    examples = list(task.load(data_dir / "d1_4x4_test_sudoku.csv"))
    assert len(examples) == 500
    assert task.rewards([f"<answer>\n{e.solution}\n</answer>" for e in examples], examples) == [1.0] * 500
    for e in examples:
        empty = [i for i, ch in enumerate(e.puzzle) if ch == "0"]
        wrong = list(e.solution)
        wrong[empty[0]] = "1" if wrong[empty[0]] != "1" else "2"
        expected = (len(empty) - 1) / len(empty)
        assert task.reward("<answer>" + "".join(wrong) + "</answer>", e) == expected == 7 / 8
        score = task.score("<answer>" + "".join(wrong) + "</answer>", e)
        assert not score.correct
