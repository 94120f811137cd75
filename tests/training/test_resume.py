"""Checkpoints: exact resume (4 steps == 2 + resume + 2) and a crash during a save keeps the previous
checkpoint loadable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed import run_distributed
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

TIMING = ("update_s", "rollout_s", "peak_mem_mib", "gen_tokens_per_s")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _train_rank(rank: int, world: int, argv: list[str], crash_on_save_at: int | None = None) -> dict:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.checkpointing.hf_io import CheckpointError
    from megatron_bgpo.training import checkpoint as ckpt
    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    register_dense_task()
    if crash_on_save_at is not None:
        real_save = ckpt.dist_checkpointing.save

        def crashing_save(state, folder, **kwargs):
            if state["iteration"] == crash_on_save_at:
                (Path(folder) / "__partial.distcp").write_bytes(b"half a shard")
                raise RuntimeError("simulated crash during save")
            return real_save(state, folder, **kwargs)

        ckpt.dist_checkpointing.save = crashing_save
    trainer = Trainer(parse_args(argv))
    start = trainer.step
    error = None
    try:
        results = trainer.run()
    except CheckpointError as exc:  # the failed save, reported with its cause
        results, error = [], str(exc)
    metrics = [{k: v for k, v in r.metrics.items() if k not in TIMING} for r in results]
    params = [p.detach().clone() for m in trainer.policy.model for p in m.module.parameters()]
    ps.destroy_model_parallel()
    return {"start": start, "metrics": metrics, "params": params, "error": error}


@pytest.mark.parametrize(
    "objective,extra", [("elbo_sft", {}), ("bgpo", {"tensor_model_parallel_size": 2, "task": DENSE_TASK})]
)
def test_resume_is_exact(files, tmp_path: Path, objective: str, extra: dict) -> None:
    full = run_distributed(_train_rank, 2, flags(files, objective=objective, **extra))
    save = str(tmp_path / "ckpt")
    first = run_distributed(
        _train_rank, 2, flags(files, objective=objective, train_steps=2, save=save, **extra)
    )
    second = run_distributed(_train_rank, 2, flags(files, objective=objective, load=save, save=save, **extra))
    assert second[0]["start"] == 2
    assert all(m["grad_norm"] > 0 for m in full[0]["metrics"])  # the weights really move
    for rank in range(2):
        assert first[rank]["metrics"] + second[rank]["metrics"] == full[rank]["metrics"]
        for a, b in zip(second[rank]["params"], full[rank]["params"], strict=True):
            assert torch.equal(a, b)
    assert (Path(save) / "latest_checkpointed_iteration.txt").read_text().strip() == "4"


def test_crash_during_save_keeps_previous_checkpoint(files, tmp_path: Path) -> None:
    save = str(tmp_path / "ckpt")
    after_two = run_distributed(_train_rank, 2, flags(files, objective="elbo_sft", train_steps=2, save=save))
    crashed = run_distributed(
        _train_rank, 2, flags(files, objective="elbo_sft", load=save, save=save, save_interval=1), 3
    )
    assert "writing iter_0000003 failed (RuntimeError: simulated crash during save" in crashed[0]["error"]
    assert not (Path(save) / "iter_0000003").exists()  # the partial folder was removed
    assert (Path(save) / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    # Loading now resumes from step 2 with exactly the step-2 weights.
    resumed = run_distributed(_train_rank, 2, flags(files, objective="elbo_sft", load=save, train_steps=2))
    assert resumed[0]["start"] == 2 and resumed[0]["metrics"] == []
    for a, b in zip(resumed[0]["params"], after_two[0]["params"], strict=True):
        assert torch.equal(a, b)
