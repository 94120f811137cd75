"""megatron-core's DistributedOptimizer on CPU/gloo (parallel/cpu_compat.py) equals the non-distributed
optimizer, and its checkpoints resume bitwise at the same layout and with the Adam state at another one.

Reference: the non-distributed optimizer in one process (TP=1, DP=1), 4 Adam steps (lr 1e-3, clipping at
1.0, active: the grad norms are 17-49) on a fixed BGPO batch with fresh masks each step. Gradients are
compared after the DP reduction (the distributed optimizer reduce-scatters: the test all-gathers the
shards back), weights after each step. Other layouts sum in another order, so they agree to fp32
rounding, not bit for bit (observed on 2026-12-03: gradients <= 3.4e-6 relative, weights <= 2.1e-6
relative and <= 1.3e-5 absolute: Adam's first step is lr * g / (|g| + eps), so an entry whose gradient
is rounding noise near eps = 1e-8 moves by a layout-dependent fraction of lr = 1e-3).

Checkpoints use the 'fully_reshardable' format (training/checkpoint.py OPTIMIZER_METADATA). A control
that drops the loaded Adam moments at the new layout lands > 100x outside the tolerance.
"""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.parallel import cpu_compat
from megatron_bgpo.training.config import OptimArgs
from megatron_bgpo.training.optimizer import use_distributed_optimizer
from tests.distributed import run_distributed
from tests.training.optim_ranks import Run, max_abs, max_rel, merge_run, train_rank

WEIGHT_RTOL = 1e-5  # per-tensor relative L2 difference of the weights after each step
WEIGHT_ATOL = 5e-5  # largest single entry (5% of one step of lr 1e-3)
GRAD_RTOL = 1e-5  # per-tensor relative L2 difference of the DP-summed gradients
STEPS, SAVE_AFTER = 4, 2
# name -> (world size, TP) of the resumes; the checkpoint is saved at TP=2 x DP=2.
OTHER_LAYOUTS = {"tp1_dp4": (4, 1), "tp2_dp1": (2, 2)}


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return merge_run(run_distributed(train_rank, 1, Run(steps=STEPS)))


@pytest.fixture(scope="module")
def tp2_dp2(tmp_path_factory) -> dict:
    """The distributed optimizer at TP=2 x DP=2, 4 steps, checkpoint after step 2."""
    save = str(tmp_path_factory.mktemp("distopt") / "ckpt")
    run = Run(tp=2, distributed_optimizer=True, steps=STEPS, save=save, save_after=SAVE_AFTER)
    ranks = run_distributed(train_rank, 4, run)
    return {"ranks": ranks, "steps": merge_run(ranks), "save": save}


def assert_steps_match(got: list[dict], want: list[dict]) -> tuple[float, float]:
    """Same number of steps; per step grad norm, gradients and weights within the fp32 tolerances.
    Returns the largest (weight relative, weight absolute, gradient relative) differences."""
    assert len(got) == len(want)
    worst = [0.0, 0.0, 0.0]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-6, abs=1e-7), i
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-5), i
        step = (
            max_rel(g["weights"], w["weights"]),
            max_abs(g["weights"], w["weights"]),
            max_rel(g["grads"], w["grads"]),
        )
        worst = [max(a, b) for a, b in zip(worst, step, strict=True)]
    assert worst[0] <= WEIGHT_RTOL and worst[1] <= WEIGHT_ATOL and worst[2] <= GRAD_RTOL, worst
    return tuple(worst)


def _say(what: str, worst: tuple[float, float, float]) -> None:
    print(f"{what}: weights rel {worst[0]:.3g} abs {worst[1]:.3g}, gradients rel {worst[2]:.3g}")


def test_the_distributed_optimizer_is_not_downgraded_on_cpu(capsys) -> None:
    cpu_compat._WARNED.clear()
    assert use_distributed_optimizer(OptimArgs(use_distributed_optimizer=True)) is True
    assert use_distributed_optimizer(OptimArgs()) is False
    assert capsys.readouterr().out == ""


def test_dp2_equals_the_non_distributed_optimizer(reference) -> None:
    ranks = run_distributed(train_rank, 2, Run(distributed_optimizer=True, steps=STEPS))
    assert ranks[0]["inner"] == ["DistributedOptimizer"] and ranks[0]["main_dtypes"] == ["torch.float32"]
    _say("DP=2 distributed optimizer vs reference", assert_steps_match(merge_run(ranks), reference))


def test_tp2_dp2_equals_the_non_distributed_optimizer(reference, tp2_dp2) -> None:
    assert tp2_dp2["ranks"][0]["inner"] == ["DistributedOptimizer"]
    _say("TP=2 x DP=2 distributed optimizer vs reference", assert_steps_match(tp2_dp2["steps"], reference))


def test_resume_at_the_same_layout_is_bitwise(tp2_dp2) -> None:
    run = Run(tp=2, distributed_optimizer=True, steps=STEPS - SAVE_AFTER, load=tp2_dp2["save"])
    ranks = run_distributed(train_rank, 4, run)
    assert all(r["start"] == SAVE_AFTER for r in ranks)
    for got, want in zip(ranks, tp2_dp2["ranks"], strict=True):  # every rank, every tensor, bit for bit
        assert (got["tp_rank"], got["dp_rank"]) == (want["tp_rank"], want["dp_rank"])
        for i, step in enumerate(got["steps"]):
            ref = want["steps"][SAVE_AFTER + i]
            assert step["grad_norm"] == ref["grad_norm"]
            for what in ("grads", "weights"):
                assert all(torch.equal(step[what][k], ref[what][k]) for k in ref[what]), (what, i)


@pytest.mark.parametrize("layout", sorted(OTHER_LAYOUTS))
def test_resume_at_another_layout_keeps_the_adam_state(tp2_dp2, layout: str) -> None:
    world, tp = OTHER_LAYOUTS[layout]
    run = Run(tp=tp, distributed_optimizer=True, steps=STEPS - SAVE_AFTER, load=tp2_dp2["save"])
    ranks = run_distributed(train_rank, world, run)
    assert all(r["start"] == SAVE_AFTER for r in ranks)
    # the first resumed step's update and the one after it, against the uninterrupted run
    _say(layout, assert_steps_match(merge_run(ranks), tp2_dp2["steps"][SAVE_AFTER:]))


def test_a_fresh_adam_state_at_the_new_layout_is_detected(tp2_dp2) -> None:
    """Control: the same resume without the loaded Adam moments ends far from the reference weights."""
    run = Run(tp=2, distributed_optimizer=True, steps=1, load=tp2_dp2["save"], drop_adam_state=True)
    (got,) = merge_run(run_distributed(train_rank, 2, run))
    diff = max_rel(got["weights"], tp2_dp2["steps"][SAVE_AFTER]["weights"])
    print(f"fresh Adam: weights rel {diff:.3g}")
    assert diff > 100 * WEIGHT_RTOL


def test_resuming_with_the_other_optimizer_is_a_clear_error(tp2_dp2) -> None:
    run = Run(tp=2, distributed_optimizer=False, steps=1, load=tp2_dp2["save"])
    with pytest.raises(
        AssertionError, match="saved with --use-distributed-optimizer true, this run uses false"
    ):
        run_distributed(train_rank, 2, run)
