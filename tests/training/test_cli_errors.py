"""The entry points turn bad input into one clear error line and a non-zero exit (no traceback)."""

from __future__ import annotations

import sys

import pytest

from tests.commands import run_command


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["tools/train.py", "--model", "/no/such/model"],
            "error: --model '/no/such/model' is neither a preset",
        ),
        (
            ["tools/train.py", "--model", "tiny", "--tp", "3"],
            "error: world size 1 is not divisible by tensor_model_parallel_size (3)",
        ),
        (
            ["tools/generate.py", "--load", "/no/such/ckpt", "--prompt", "hi"],
            "error: /no/such/ckpt: not a Megatron",
        ),
        (
            ["tools/eval.py", "--load", "/no/such/ckpt", "--task", "sudoku=x.csv"],
            "error: /no/such/ckpt: not a Megatron",
        ),
        (
            ["tools/eval.py", "--load", "x", "--task", "sudoku=x.csv", "--steps", "8"],
            "error: --steps was renamed --diffusion-steps",
        ),
        (
            ["tools/generate.py", "--load", "x", "--prompt", "hi", "--steps", "8"],
            "error: --steps was renamed --diffusion-steps",
        ),
    ],
)
def test_cli_bad_input(argv: list[str], message: str) -> None:
    proc = run_command([sys.executable, *argv], timeout=300)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
