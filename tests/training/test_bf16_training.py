"""bf16 parameters with fp32 main weights train on CPU (megatron-core's Float16OptimizerWithFloat16Params,
and the DistributedOptimizer at DP=2) and track the fp32 run.

Reference: the fp32 run of the same 3 Adam steps (tests/training/optim_ranks.py; the ELBO-SFT objective,
whose loss depends on the weights; BGPO's on-policy loss is constant). bf16 rounds every activation to
8 significant bits, so the comparison is statistical, with tolerances about 3x what was observed on
2026-12-03 (in brackets): loss relative 2e-3 [4.4e-4], grad norm relative 2e-2 [5e-3], per-tensor
relative L2 of the gradients 0.1 [0.032] and of the weights 1e-2 [4.0e-3, i.e. bf16 rounding of the
weights themselves: the fp32 main weights carry the updates].
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed import run_distributed
from tests.training.optim_ranks import Run, max_abs, max_rel, merge_run, train_rank

STEPS = 3
LOSS_RTOL, GRAD_NORM_RTOL, GRAD_RTOL, WEIGHT_RTOL = 2e-3, 2e-2, 0.1, 1e-2
OBJECTIVE = "elbo_sft"
LR = 1e-3  # optim_ranks.train_rank


@pytest.fixture(scope="module")
def fp32() -> list[dict]:
    return merge_run(run_distributed(train_rank, 1, Run(steps=STEPS, objective=OBJECTIVE)))


@pytest.mark.parametrize(
    "world,distributed,optimizer",
    [(1, False, "Float16OptimizerWithFloat16Params"), (2, True, "DistributedOptimizer")],
)
def test_bf16_tracks_fp32(fp32, world: int, distributed: bool, optimizer: str) -> None:
    run = Run(steps=STEPS, objective=OBJECTIVE, params_dtype="bf16", distributed_optimizer=distributed)
    ranks = run_distributed(train_rank, world, run)
    assert ranks[0]["inner"] == [optimizer]
    assert ranks[0]["main_dtypes"] == ["torch.float32"]  # what Adam updates: fp32 main weights
    worst = {"loss": 0.0, "grad_norm": 0.0, "grads": 0.0, "weights": 0.0}
    for got, want in zip(merge_run(ranks), fp32, strict=True):
        assert got["grad_norm"] > 1.0  # clipping at 1.0 is active: the steps are lr-sized
        worst["loss"] = max(worst["loss"], abs(got["loss"] - want["loss"]) / abs(want["loss"]))
        worst["grad_norm"] = max(worst["grad_norm"], abs(got["grad_norm"] / want["grad_norm"] - 1))
        worst["grads"] = max(worst["grads"], max_rel(got["grads"], want["grads"]))
        worst["weights"] = max(worst["weights"], max_rel(got["weights"], want["weights"]))
    print(f"bf16 ({optimizer}) vs fp32, worst relative differences: {worst}")
    assert worst["loss"] <= LOSS_RTOL and worst["grad_norm"] <= GRAD_NORM_RTOL
    assert worst["grads"] <= GRAD_RTOL and worst["weights"] <= WEIGHT_RTOL


def test_bf16_finetune_trains_from_the_loaded_weights(tmp_path) -> None:
    """--finetune (weights only) with bf16: the optimizer's fp32 main weights are refreshed from the
    loaded model, so the first step moves each loaded weight by at most lr (+ bf16 rounding) instead of
    replacing it with the randomly initialised one the optimizer copied at build time (|dw| ~ 0.02)."""
    save = str(tmp_path / "ckpt")
    (saved,) = merge_run(
        run_distributed(train_rank, 1, Run(steps=1, params_dtype="bf16", save=save, save_after=1))
    )
    (ranks,) = [run_distributed(train_rank, 1, Run(steps=1, params_dtype="bf16", load=save, finetune=True))]
    assert ranks[0]["start"] == 0
    loaded = ranks[0]["loaded"]
    assert max_abs(loaded, saved["weights"]) == 0.0
    (step,) = merge_run(ranks)
    worst = 0.0
    for key, before in loaded.items():
        after = step["weights"][key]
        # Adam's first step moves a main weight by at most lr; the bf16 copy rounds to half an ulp
        bound = LR + _bf16_ulp(torch.maximum(before.abs(), after.abs()))
        worst = max(worst, ((after - before).abs() / bound).max().item())
    print(f"finetune: first step |dw| / (lr + bf16 ulp) <= {worst:.3g}")
    assert 0 < worst <= 1.0


def _bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """Spacing of bf16 numbers at |x| (8 significant bits): 2^(e - 8) for |x| in [2^(e-1), 2^e)."""
    _, exponent = torch.frexp(x.double())
    return torch.ldexp(torch.ones_like(x, dtype=torch.float64), exponent - 8)


@pytest.mark.parametrize("world,distributed", [(1, False), (2, True)])
def test_bf16_resume_is_bitwise(tmp_path, world: int, distributed: bool) -> None:
    """A bf16 checkpoint holds the fp32 main weights and Adam state: 2 steps == 1 + resume + 1, bitwise."""
    save = str(tmp_path / "ckpt")
    common = {"params_dtype": "bf16", "distributed_optimizer": distributed, "objective": OBJECTIVE}
    full = merge_run(run_distributed(train_rank, world, Run(steps=2, save=save, save_after=1, **common)))
    resumed = merge_run(run_distributed(train_rank, world, Run(steps=1, load=save, **common)))
    assert resumed[0]["grad_norm"] == full[1]["grad_norm"]
    for what in ("grads", "weights"):
        assert all(torch.equal(resumed[0][what][k], full[1][what][k]) for k in full[1][what]), what
