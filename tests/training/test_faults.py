"""Faults of long runs end in one ``error:`` line (the same on every rank) and leave what was saved
untouched: damaged checkpoints (missing or truncated shard, flipped byte, missing ``.metadata``, empty
``tokenizer.model``), ``--load-fallback``, an unwritable or too small ``--save``, a save that runs out of
space (RLIMIT_FSIZE makes the shard write fail with EFBIG, as ENOSPC would), and non-finite runs.

The runs call ``tools/train.py``'s ``main`` in forked gloo ranks (2 ranks, DP=2) and report the
``SystemExit`` message; two tests run the real entry point to check exit status and stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path

import pytest

from tests.commands import run_command
from tests.distributed import run_distributed
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

TRACKER = "latest_checkpointed_iteration.txt"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _argv(files: dict[str, str], **overrides) -> list[str]:
    return flags(files, objective="bgpo", task=DENSE_TASK, **overrides)


def _main_rank(rank: int, world: int, argv: list[str], file_size_limit: int | None = None) -> dict:
    """``tools/train.py`` main on this rank: ``{"exit": SystemExit message or None, "steps": [...]}``."""
    import resource
    import signal

    from megatron_bgpo.training.loop import main

    register_dense_task()
    if file_size_limit is not None:  # writes past the limit fail with EFBIG instead of killing the rank
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    try:
        results = main(argv)
    except SystemExit as exc:
        return {"exit": str(exc.code), "steps": None}
    return {"exit": None, "steps": [r.step for r in results], "metrics": [r.metrics for r in results]}


def _run(world: int, argv: list[str], *args) -> list[dict]:
    return run_distributed(_main_rank, world, argv, *args, timeout=120)


def _snapshot(root: Path) -> dict[str, int]:
    """crc32 of every checkpoint file under ``root`` (metrics.jsonl, a log the run appends to, excluded)."""
    return {
        str(p.relative_to(root)): zlib.crc32(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "metrics.jsonl"
    }


@pytest.fixture(scope="module")
def saved(files, tmp_path_factory) -> Path:
    """Checkpoints of steps 1 and 2 of a DP=2 run (two shard files per iteration)."""
    root = tmp_path_factory.mktemp("saved") / "ckpt"
    out = _run(2, _argv(files, train_steps=2, save=root, save_interval=1))
    assert out[0]["exit"] is None and (root / TRACKER).read_text().strip() == "2"
    return root


def _copy(saved: Path, tmp_path: Path) -> Path:
    shutil.copytree(saved, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "missing_shard": ("iter_0000002/__1_0.distcp", Path.unlink, "__1_0.distcp is missing"),
    "truncated_shard": ("iter_0000002/__0_0.distcp", _truncate, "bytes, manifest.json records"),
    "flipped_byte": ("iter_0000002/__0_0.distcp", _flip_byte, "has crc32"),
    "missing_metadata": ("iter_0000002/.metadata", Path.unlink, ".metadata is missing"),
    "empty_tokenizer": ("tokenizer/tokenizer.model", lambda p: p.write_bytes(b""), "0 bytes, manifest"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_latest_checkpoint_is_reported_by_name(files, saved, tmp_path: Path, case: str) -> None:
    ckpt = _copy(saved, tmp_path)
    name, damage, detail = DAMAGE[case]
    damage(ckpt / name)
    before = _snapshot(ckpt)
    out = _run(2, _argv(files, load=ckpt, save=ckpt, train_steps=3))
    for rank in out:  # every rank stops with the same message, before any step
        assert rank["exit"].startswith(f"error: checkpoint {ckpt / 'iter_0000002'} is damaged: "), rank
        assert str(ckpt / name) in rank["exit"] and detail in rank["exit"], rank["exit"]
        assert "--load-fallback true" in rank["exit"]
    assert _snapshot(ckpt) == before


def test_load_fallback_resumes_from_the_newest_complete_one(files, saved, tmp_path: Path, capfd) -> None:
    ckpt = _copy(saved, tmp_path)
    _truncate(ckpt / "iter_0000002" / "__0_0.distcp")
    out = _run(2, _argv(files, load=ckpt, save=ckpt, train_steps=3, load_fallback="true"))
    assert [r["steps"] for r in out] == [[1, 2]] * 2  # resumed at step 1, trained steps 2 and 3
    err = capfd.readouterr().err
    assert f"warning: --load-fallback: checkpoint {ckpt / 'iter_0000002'} is damaged" in err
    assert f"resuming from {ckpt / 'iter_0000001'} instead" in err
    assert (ckpt / TRACKER).read_text().strip() == "3"


def test_fallback_without_a_complete_iteration_fails(files, saved, tmp_path: Path) -> None:
    ckpt = _copy(saved, tmp_path)
    for it in ("iter_0000001", "iter_0000002"):
        (ckpt / it / ".metadata").unlink()
    out = _run(2, _argv(files, load=ckpt, train_steps=3, load_fallback="true"))
    assert "--load-fallback found no complete iteration under" in out[0]["exit"], out[0]


@pytest.mark.parametrize("world", [1, 2])
def test_unwritable_save_fails_before_the_first_step(files, tmp_path: Path, world: int) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for save in (blocker, blocker / "sub"):
        out = _run(world, _argv(files, save=save))
        for rank in out:
            assert rank["exit"].startswith(f"error: --save {save} is not a writable folder ("), rank
    assert blocker.read_text() == "not a folder"


def test_disk_full_during_save_keeps_the_previous_checkpoint(files, saved, tmp_path: Path) -> None:
    ckpt = _copy(saved, tmp_path)
    before = _snapshot(ckpt)
    limit = 256 * 1024  # above the tokenizer / config / metrics files, below the 2 MB weight shard
    out = _run(2, _argv(files, load=ckpt, save=ckpt, train_steps=3), limit)
    for rank in out:
        assert rank["exit"].startswith(f"error: --save {ckpt}: writing iter_0000003 failed ("), rank
        assert "MiB free)" in rank["exit"] and f"{TRACKER} still names the previous" in rank["exit"]
    assert not (ckpt / "iter_0000003").exists()
    assert _snapshot(ckpt) == before


def _check_space(rank: int, world: int, save: str) -> str:
    import shutil as sh

    import torch.distributed as dist

    from megatron_bgpo.checkpointing.hf_io import CheckpointError
    from megatron_bgpo.training.checkpoint import check_save_dir

    dist.init_process_group("gloo")
    check_save_dir(save, 1)  # fits
    try:
        check_save_dir(save, sh.disk_usage(save).free + 2**40)
    except CheckpointError as exc:
        return str(exc)
    return "no error"


def test_too_little_free_space_is_reported_with_both_sizes(tmp_path: Path) -> None:
    messages = run_distributed(_check_space, 2, str(tmp_path))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"--save {tmp_path}: ")
    assert "not enough disk space for" in messages[0] and "(one checkpoint); free space" in messages[0]


def test_checkpoint_size_estimate_matches_a_real_checkpoint(files, saved) -> None:
    import torch

    from megatron_bgpo.models.llada import LLaDAConfig
    from megatron_bgpo.training.checkpoint import checkpoint_bytes

    estimate = checkpoint_bytes(LLaDAConfig.from_json(files["model"]), torch.float32)
    actual = sum(p.stat().st_size for p in (saved / "iter_0000002").iterdir())
    print(f"tiny checkpoint: {actual} bytes on disk, estimate {estimate}")
    assert estimate <= actual <= 1.1 * estimate


def test_non_finite_run_stops_after_max_skipped_steps(files, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    argv = _argv(files, lr=1e30, train_steps=6, save=ckpt, save_interval=1, max_skipped_steps=2)
    out = _run(2, argv)
    for rank in out:
        assert rank["exit"].startswith("error: 2 consecutive steps (up to step 3) had a non-finite"), rank
        assert "Stopped without saving (--max-skipped-steps 2)" in rank["exit"]
    logged = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("skipped", 0.0), r["skipped_steps"]) for r in logged] == [
        (1, 0.0, 0.0),  # the step that overshoots (lr 1e30): finite, weights now ~1e30
        (2, 1.0, 1.0),
    ]
    assert (ckpt / TRACKER).read_text().strip() == "2"  # the skipped step 2 saved unchanged weights
    assert not (ckpt / "iter_0000003").exists()


def test_entry_point_prints_one_error_line(files, saved, tmp_path: Path) -> None:
    """The real ``tools/train.py`` (one process) on a damaged checkpoint: exit status 1, one line."""
    ckpt = _copy(saved, tmp_path)
    (ckpt / "iter_0000002" / "__1_0.distcp").unlink()
    argv = [sys.executable, "tools/train.py", *flags(files, load=ckpt, train_steps=3)]
    proc = run_command(argv, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert errors[0].startswith(f"error: checkpoint {ckpt / 'iter_0000002'} is damaged: "), errors
    assert "Traceback" not in proc.stderr
