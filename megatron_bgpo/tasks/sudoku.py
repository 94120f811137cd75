"""4x4 Sudoku: fill the empty cells (``0``) of a 16-character row-major grid with digits 1-4.

Reward as d1: the digits of the last ``<answer>`` block, padded with ``0`` or truncated to 16,
scored as the fraction of the puzzle's empty cells filled with the solution's digit; 0 without an
answer block. The test set is d1's; for training, :func:`generate_puzzles` draws puzzles with a
unique solution from the 288 valid grids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from megatron_bgpo.tasks import prompts
from megatron_bgpo.tasks.base import Message, Score, Task, answer_block

_UNITS = (
    [[4 * r + c for c in range(4)] for r in range(4)]
    + [[4 * r + c for r in range(4)] for c in range(4)]
    + [[4 * (br + r) + bc + c for r in range(2) for c in range(2)] for br in (0, 2) for bc in (0, 2)]
)


@dataclass(frozen=True)
class SudokuExample:
    id: str
    puzzle: str  # 16 chars, '0' = empty
    solution: str  # 16 chars, digits 1-4


def is_valid_grid(grid: str) -> bool:
    """Whether ``grid`` is a complete, valid 4x4 Sudoku."""
    return len(grid) == 16 and all(sorted(grid[i] for i in unit) == list("1234") for unit in _UNITS)


@lru_cache(maxsize=1)
def all_grids() -> tuple[str, ...]:
    """All valid 4x4 Sudoku grids (there are 288), by backtracking over the cells."""
    peers = [{j for unit in _UNITS if i in unit for j in unit if j != i} for i in range(16)]
    grids: list[str] = []
    cells = [""] * 16

    def fill(i: int) -> None:
        if i == 16:
            grids.append("".join(cells))
            return
        for digit in "1234":
            if all(cells[j] != digit for j in peers[i]):
                cells[i] = digit
                fill(i + 1)
                cells[i] = ""

    fill(0)
    return tuple(grids)


@lru_cache(maxsize=1)
def _grid_array() -> np.ndarray:
    """The 288 valid grids as a [288, 16] uint8 array of digits."""
    return np.array([[int(ch) for ch in g] for g in all_grids()], dtype=np.uint8)


def _consistent(puzzle: str) -> np.ndarray:
    """[288] bool: which valid grids agree with every given cell of ``puzzle`` (vectorised)."""
    digits = np.frombuffer(puzzle.encode(), dtype=np.uint8) - ord("0")
    return ((_grid_array() == digits) | (digits == 0)).all(axis=1)


def solutions(puzzle: str) -> list[str]:
    """Every valid grid consistent with ``puzzle``."""
    grids = all_grids()
    return [grids[i] for i in np.flatnonzero(_consistent(puzzle))]


def generate_puzzles(n: int, n_empty: int | tuple[int, int] = (6, 10), seed: int = 0) -> list[SudokuExample]:
    """``n`` distinct puzzles with a unique solution and ``n_empty`` empty cells (an int or a range).

    Cells are removed from a random valid grid in random order, keeping a removal only while the
    solution stays unique; a draw that cannot reach the wanted count is retried. d1's test puzzles
    have 8 empty cells.
    """
    low, high = (n_empty, n_empty) if isinstance(n_empty, int) else n_empty
    if not 0 <= low <= high <= 16:
        raise ValueError(f"bad n_empty {n_empty}")
    rng = random.Random(seed)
    grids = all_grids()
    seen: set[str] = set()
    out: list[SudokuExample] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * n + 1000:
            raise RuntimeError(
                f"could not generate {n} distinct unique-solution puzzles with {n_empty} empty cells"
            )
        grid = rng.choice(grids)
        want = rng.randint(low, high)
        cells = list(grid)
        for i in rng.sample(range(16), 16):
            if cells.count("0") == want:
                break
            kept, cells[i] = cells[i], "0"
            if _consistent("".join(cells)).sum() != 1:
                cells[i] = kept
        puzzle = "".join(cells)
        if puzzle.count("0") == want and puzzle not in seen:
            seen.add(puzzle)
            out.append(SudokuExample(f"sudoku-gen-{seed}-{len(out)}", puzzle, grid))
    return out


def extract_grid(text: str) -> str | None:
    """The digits of the last ``<answer>`` block (d1), or None without one."""
    block = answer_block(text)
    if block is None:
        return None
    return "".join(ch for ch in block if ch.isdigit())


def cell_accuracy(grid: str | None, example: SudokuExample) -> float:
    if not grid:
        return 0.0
    grid = (grid + "0" * 16)[:16]
    empty = [i for i, ch in enumerate(example.puzzle) if ch == "0"]
    if not empty:
        return 0.0
    return sum(grid[i] == example.solution[i] for i in empty) / len(empty)


class SudokuTask(Task[SudokuExample]):
    """4x4 Sudoku. Records: ``Puzzle``/``Solution`` (d1's CSV) or ``puzzle``/``solution``.

    The Table-1 metric is the mean reward, i.e. the cell accuracy over empty cells (all of d1's test
    puzzles have 8 empty cells); ``Score.correct`` means fully solved.
    """

    name = "sudoku"
    table_column = "Sudoku"
    table_metric = "mean_reward"

    @property
    def max_reward(self) -> float:
        return 1.0

    def example_from_record(self, record: dict[str, Any]) -> SudokuExample:
        puzzle = str(record["Puzzle"] if "Puzzle" in record else record["puzzle"]).strip()
        solution = str(record["Solution"] if "Solution" in record else record["solution"]).strip()
        if len(puzzle) != 16 or any(ch not in "01234" for ch in puzzle):
            raise ValueError(f"puzzle {puzzle!r} is not 16 digits 0-4")
        if not is_valid_grid(solution):
            raise ValueError(f"solution {solution!r} is not a valid 4x4 grid")
        if any(p not in ("0", s) for p, s in zip(puzzle, solution, strict=True)):
            raise ValueError("solution contradicts the puzzle")
        return SudokuExample(str(record.get("id", "")), puzzle, solution)

    def build_messages(self, example: SudokuExample) -> list[Message]:
        return prompts.user(
            prompts.SUDOKU + "\n\n" + f"Solve the following Sudoku puzzle: {example.puzzle}\n"
        )

    def _score(self, text: str, example: SudokuExample) -> Score:
        grid = extract_grid(text)
        reward = cell_accuracy(grid, example)
        return Score(reward, reward == 1.0, grid)


class SudokuBriefTask(SudokuTask):
    """4x4 Sudoku with only d1's last prompt line (``Solve the following Sudoku puzzle: ...``).

    Same data and reward as :class:`SudokuTask`, without the ~200-token instruction block: the task of
    the tiny CPU run, whose ~1M-parameter model must learn the answer format from SFT anyway and
    trains about 5x faster per step on 33-token prompts than on 240-token ones (docs/training.md).
    """

    name = "sudoku_brief"
    table_column = None

    def build_messages(self, example: SudokuExample) -> list[Message]:
        return prompts.user(f"Solve the following Sudoku puzzle: {example.puzzle}\n")
