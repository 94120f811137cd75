"""Countdown: combine the given numbers with + - * / into an expression equal to the target.

The expression is parsed with :mod:`ast` and evaluated by a small interpreter over exact fractions
(never ``eval``): only non-negative integer literals, ``+ - * /`` (binary), unary ``-``/``+`` and
parentheses are accepted. Reward as d1: 1.0 when the expression uses exactly the given numbers (as a
multiset) and equals the target; 0.1 when an expression was extracted but is invalid, uses other
numbers or misses the target; 0.0 when there is no ``<answer>`` expression.
"""

from __future__ import annotations

import ast
import itertools
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from megatron_bgpo.tasks import prompts
from megatron_bgpo.tasks.base import Message, PromptStyle, Score, Task, answer_block, last_boxed

MAX_EXPRESSION_CHARS = 200
FORMAT_SCORE = 0.1


@dataclass(frozen=True)
class CountdownExample:
    id: str
    numbers: tuple[int, ...]
    target: int


class ExpressionError(ValueError):
    """The text is not an arithmetic expression this task accepts."""


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]]:
    """Evaluate ``expression`` exactly; return its value and the integer literals it uses."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"not an expression: {exc}") from None
    literals: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value >= 0:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if right == 0:
                raise ExpressionError("division by zero")
            return left / right
        raise ExpressionError(f"{type(node).__name__} is not allowed")

    try:
        value = walk(tree.body)
    except RecursionError:
        raise ExpressionError("nested too deeply") from None
    return value, literals


def extract_expression(text: str) -> str | None:
    """The expression in the last ``<answer>`` block (inside ``\\boxed{}`` if present), else None."""
    block = answer_block(text)
    if block is None:
        return None
    boxed = last_boxed(block)
    expression = (boxed if boxed is not None else block).strip()
    return expression or None


def score_expression(expression: str | None, numbers: tuple[int, ...], target: int) -> float:
    if expression is None:
        return 0.0
    try:
        value, used = evaluate_expression(expression)
    except ExpressionError:
        return FORMAT_SCORE
    if Counter(used) != Counter(numbers) or value != target:
        return FORMAT_SCORE
    return 1.0


def solve(numbers: tuple[int, ...] | list[int], target: int) -> str | None:
    """Brute force: an expression using each number once that equals ``target``, or None."""
    items = [(Fraction(n), str(n)) for n in numbers]

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, ea), (b, eb) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
            if b != 0:
                options.append((a / b, f"({ea} / {eb})"))
            for value, expr in options:
                found = search(rest + [(value, expr)])
                if found is not None:
                    return found
        return None

    found = search(items)
    if found is not None and found.startswith("(") and len(items) > 1:
        found = found[1:-1]
    return found


class CountdownTask(Task[CountdownExample]):
    """Countdown. Records: d1's ``{"input": "a,b,c", "output": target}`` or TinyZero's ``nums``/``target``.

    ``n_numbers`` keeps only problems with that many numbers (d1 and BGPO train on 3).
    """

    name = "countdown"
    table_column = "Countdown"
    default_sources = {"train": "hf:Jiayi-Pan/Countdown-Tasks-3to4"}

    def __init__(self, prompt_style: PromptStyle = "eval", n_numbers: int | None = None) -> None:
        super().__init__(prompt_style)
        self.n_numbers = n_numbers

    @property
    def max_reward(self) -> float:
        return 1.0

    def example_from_record(self, record: dict[str, Any]) -> CountdownExample:
        if "nums" in record:
            numbers, target = record["nums"], record["target"]
        else:
            numbers, target = str(record["input"]).split(","), record["output"]
        nums = tuple(int(n) for n in numbers)
        if not nums:
            raise ValueError("no numbers")
        return CountdownExample(str(record.get("id", "")), nums, int(target))

    def keep(self, example: CountdownExample, split: str) -> bool:
        return self.n_numbers is None or len(example.numbers) == self.n_numbers

    def build_messages(self, example: CountdownExample) -> list[Message]:
        numbers = list(example.numbers)
        if self.prompt_style == "eval":
            return prompts.user(
                prompts.COUNTDOWN_EVAL + "\n\n" + f"Numbers: {numbers}\nTarget: {example.target}"
            )
        instruction = prompts.COUNTDOWN_TRAIN.format(numbers=numbers, target=example.target)
        return prompts.user(prompts.D1_FORMAT + "\n" + instruction)

    def _score(self, text: str, example: CountdownExample) -> Score:
        expression = extract_expression(text)
        reward = score_expression(expression, example.numbers, example.target)
        return Score(reward, reward == 1.0, expression)
