"""tools/train.py turns bad input into one clear error line and a non-zero exit (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "/no/such/model"], "error: --model '/no/such/model' is neither a preset"),
        (
            ["--model", "tiny", "--tp", "3"],
            "error: world size 1 is not divisible by tensor_model_parallel_size (3)",
        ),
    ],
)
def test_train_cli_bad_input(argv: list[str], message: str) -> None:
    env = dict(os.environ, MASTER_PORT=str(free_port()), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "tools/train.py", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
