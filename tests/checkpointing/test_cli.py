"""The real entry point: ``torchrun tools/convert_hf.py import`` at TP=2; ``main()`` of export in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.checkpointing.conftest import SHARD_SIZE
from tests.checkpointing.test_convert import assert_same_hf_folder
from tests.distributed import free_port, run_distributed

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "convert_hf.py"


def _reports(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _export_main_rank(rank: int, world: int, argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI's ``main`` for ``export`` in a forked rank; returns (exit code, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location("convert_hf_cli", TOOL)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        codes = [cli.main(argv), cli.main(argv)]  # the second finds the output folder present
    return codes, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_cli_torchrun_import_tp2_then_export(hf_ckpts: dict[str, Path], tmp_path: Path) -> None:
    src, megatron, out = hf_ckpts["tiny-gqa"], tmp_path / "megatron", tmp_path / "hf"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
    ]
    cmd += [str(TOOL), "import", "--hf-dir", str(src), "--out", str(megatron), "--tp", "2", "--verify"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    imported = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-3000:]
    reports = _reports(imported.stdout)
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert all(r["verify"]["logits_rel_err"] < 1e-5 and r["peak_rss_bytes"] > 0 for r in reports)

    argv = [
        "export",
        "--megatron-dir",
        str(megatron),
        "--out",
        str(out),
        "--shard-size",
        SHARD_SIZE,
        "--verify",
    ]
    ((codes, stdout, stderr),) = run_distributed(_export_main_rank, 1, argv)
    assert codes == [0, 2], stderr
    (report,) = _reports(stdout)
    assert report["verify"]["tensor_mismatches"] == 0
    assert "already exists; pass --overwrite" in stderr
    assert_same_hf_folder(src, out)
