"""Run the project's command-line entry points from tests, in the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.distributed import free_port

REPO = Path(__file__).resolve().parents[1]


def run_command(argv: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``argv`` in the repo root with a free MASTER_PORT and extra environment ``env``."""
    full_env = dict(
        os.environ, MASTER_PORT=str(free_port()), PYTHONWARNINGS="ignore", PYTHON=sys.executable, **env
    )
    return subprocess.run(
        argv, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def torchrun(script: str, *args: str, nproc: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N script args`` with the test interpreter."""
    port = str(free_port())
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        port,
    ]
    return run_command([*cmd, script, *args], timeout=timeout)
