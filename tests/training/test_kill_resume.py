"""SIGKILL a real 2-rank run (BGPO, DP=2, a checkpoint every step) at four moments of step 3, resume
it, and check that the tracker only ever names a complete (manifest-verified) iteration and that the
resumed run's metrics and final weights equal those of an uninterrupted run, bit for bit.

Each killed run executes in its own process group; a hook at the chosen moment on rank 0 SIGKILLs the
whole group (both ranks at once, like a node going down), so the moment is deterministic:

- ``mid_rollout``: inside step 3's rollout, after its completions were generated;
- ``mid_update``: after step 3's gradients were accumulated, before the optimizer step;
- ``mid_save``: inside the save of iteration 3, after rank 0's first shard file was written;
- ``before_tracker``: iteration 3 complete with its manifest, the tracker not yet replaced.

A last case resumes the ``mid_save`` kill at another layout (TP=2, one DP replica) with the optimizer
state; it must match the uninterrupted run to fp32 reduction-order tolerance (as test_resume_layouts).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import pytest
import torch

from megatron_bgpo.checkpointing.megatron_io import resolve_checkpoint, verify_checkpoint
from tests.distributed import run_distributed
from tests.training.test_resume_layouts import WEIGHT_ATOL, _max_diff, _weights, assert_metrics_match
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

TIMING = ("update_s", "rollout_s", "peak_mem_mib", "gen_tokens_per_s")
KILL_STEP = 3  # 1-based: iterations 1 and 2 are saved when the kill comes
MOMENTS = ("mid_rollout", "mid_update", "mid_save", "before_tracker")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _argv(files: dict[str, str], save: Path, **overrides) -> list[str]:
    return flags(files, objective="bgpo", task=DENSE_TASK, save=save, save_interval=1, **overrides)


def _kill_all() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _install_kill_hook(moment: str) -> None:
    """Patch the run so that rank 0 SIGKILLs the process group at ``moment`` of step ``KILL_STEP``."""
    import torch.distributed as dist
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from megatron_bgpo.training import checkpoint as ckpt
    from megatron_bgpo.training import policy

    if dist.get_rank() != 0:
        return
    calls = {"n": 0}

    def on_call(fn, kill_at_call: int):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == kill_at_call:
                _kill_all()
            return out

        return wrapper

    if moment == "mid_rollout":  # the sampler's generate runs once per step
        import megatron_bgpo.training.rollout as rollout

        rollout.Rollout.generate = on_call(rollout.Rollout.generate, KILL_STEP)
    elif moment == "mid_update":  # one policy_update per step (on-policy)
        policy.policy_update = on_call(policy.policy_update, KILL_STEP)
    elif moment == "mid_save":  # one shard file per rank per save
        writer = filesystem_async.FileSystemWriterAsync
        writer.write_preloaded_data = staticmethod(on_call(writer.write_preloaded_data, KILL_STEP))
    elif moment == "before_tracker":  # write_atomic: the manifest, then the tracker, per save
        real = ckpt.write_atomic

        def write_atomic(path: Path, text: str) -> None:
            if path.name == ckpt.TRACKER_FILE and text.strip() == str(KILL_STEP):
                assert (path.parent / f"iter_{KILL_STEP:07d}" / "manifest.json").is_file()
                _kill_all()
            real(path, text)

        ckpt.write_atomic = write_atomic
    else:
        raise ValueError(moment)


def _train_rank(rank: int, world: int, argv: list[str], kill_moment: str | None = None) -> dict:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    register_dense_task()
    trainer = Trainer(parse_args(argv))
    if kill_moment is not None:
        _install_kill_hook(kill_moment)
    start = trainer.step
    results = trainer.run()
    metrics = [{k: v for k, v in r.metrics.items() if k not in TIMING} for r in results]
    params = [p.detach().clone() for m in trainer.policy.model for p in m.module.parameters()]
    ps.destroy_model_parallel()
    return {"start": start, "metrics": metrics, "params": params}


def _group_leader(argv: list[str], moment: str) -> None:
    os.setpgrp()  # the ranks forked below join this group; the hook kills all of it
    run_distributed(_train_rank, 2, argv, moment, timeout=120)


def _killed_run(argv: list[str], moment: str) -> int:
    """Run 2 ranks that SIGKILL themselves at ``moment``; returns the group leader's exit code."""
    leader = mp.get_context("fork").Process(target=_group_leader, args=(argv, moment))
    leader.start()
    leader.join(timeout=180)
    if leader.is_alive():
        os.killpg(leader.pid, signal.SIGKILL)
        leader.join()
        pytest.fail(f"the {moment} kill never happened")
    return leader.exitcode


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory) -> dict:
    """The uninterrupted 4-step run (same flags, its own --save)."""
    save = tmp_path_factory.mktemp("reference") / "ckpt"
    out = run_distributed(_train_rank, 2, _argv(files, save))
    assert all(m["grad_norm"] > 0 for m in out[0]["metrics"])  # the weights really move
    return {"ranks": out, "save": save}


def _kill_and_check_tracker(files, save: Path, moment: str) -> int:
    assert _killed_run(_argv(files, save), moment) == -signal.SIGKILL
    _, folder, iteration = resolve_checkpoint(save)
    verify_checkpoint(folder)  # the tracker names a complete iteration (raises otherwise)
    assert iteration == KILL_STEP - 1
    return iteration


@pytest.mark.parametrize("moment", MOMENTS)
def test_kill_then_resume_equals_the_uninterrupted_run(files, reference, tmp_path: Path, moment: str) -> None:
    save = tmp_path / "ckpt"
    start = _kill_and_check_tracker(files, save, moment)
    killed_iteration = save / f"iter_{KILL_STEP:07d}"
    if moment == "mid_save":  # a partial iteration 3 without a manifest, never tracked
        assert (killed_iteration / "__0_0.distcp").is_file()
        assert not (killed_iteration / "manifest.json").exists()
    elif moment == "before_tracker":  # iteration 3 complete but untracked; the resume rewrites it
        verify_checkpoint(killed_iteration)
    else:
        assert not killed_iteration.exists()
    resumed = run_distributed(_train_rank, 2, _argv(files, save, load=save))
    for rank in range(2):
        assert resumed[rank]["start"] == start
        assert resumed[rank]["metrics"] == reference["ranks"][rank]["metrics"][start:]
        for a, b in zip(resumed[rank]["params"], reference["ranks"][rank]["params"], strict=True):
            assert torch.equal(a, b)
    _, folder, iteration = resolve_checkpoint(save)
    verify_checkpoint(folder)
    assert iteration == 4


def test_kill_then_resume_at_another_layout_with_the_optimizer_state(files, reference, tmp_path) -> None:
    save = tmp_path / "ckpt"
    start = _kill_and_check_tracker(files, save, "mid_save")
    resumed = run_distributed(_train_rank, 2, _argv(files, save, load=save, tensor_model_parallel_size=2))
    assert resumed[0]["start"] == start and len(resumed[0]["metrics"]) == 2
    assert_metrics_match(resumed[0]["metrics"], reference["ranks"][0]["metrics"][start:])
    assert _max_diff(_weights(str(save)), _weights(str(reference["save"]))) <= WEIGHT_ATOL
