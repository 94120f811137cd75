"""Checkpoints load at a different TP/PP layout *with* their optimizer state: 4 BGPO steps at TP=2 match
2 steps at TP=2 + resume (``--load``, Adam moments, scheduler, step) + 2 steps at TP=1 x DP=2 and at PP=2.

The untrained tiny model never writes an ``<answer>`` block, so Sudoku's reward is 0 everywhere, every
group has zero variance and BGPO never changes a weight. The ranks therefore score with a dense
test-only reward (the share of digits in the completion) that separates the completions of a group.

Different layouts reduce in a different order, so numbers agree to fp32 rounding, not bit for bit; the
rollouts' tokens (hence rewards) are the same. Final weights are compared in their layout-independent
(HF) form, read back from each run's final checkpoint. A control that drops the loaded Adam moments at
the new layout lands far outside the tolerance, so the comparison does detect an optimizer state that
was not carried over.
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed import run_distributed
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

TIMING = ("update_s", "rollout_s", "peak_mem_mib", "gen_tokens_per_s")
# Exact in token space: the rollouts sample the same tokens at every layout.
EXACT = ("reward_mean", "reward_std", "accuracy", "zero_variance_groups", "lr", "overflow_guard")
WEIGHT_ATOL = 1e-5  # fp32 reduction-order differences after 2 Adam steps (observed <= 1e-6)
REFERENCE = {"objective": "bgpo", "task": DENSE_TASK, "tensor_model_parallel_size": 2}
# name -> (world size, layout flags); the tiny config has 2 layers, one per stage at PP=2.
LAYOUTS = {
    "tp1_dp2": (2, {"tensor_model_parallel_size": 1}),
    "pp2": (2, {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 2}),
    "single_process": (1, {"tensor_model_parallel_size": 1}),  # another world size: RNG state not reused
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _train_rank(rank: int, world: int, argv: list[str], drop_adam_state: bool = False) -> dict:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    register_dense_task()
    trainer = Trainer(parse_args(argv))
    start = trainer.step
    if drop_adam_state:  # the control: a fresh Adam (step count and moments) at the loaded step
        for opt in getattr(trainer.policy.optimizer, "chained_optimizers", [trainer.policy.optimizer]):
            opt.optimizer.state.clear()
    results = trainer.run()
    ps.destroy_model_parallel()
    metrics = [{k: v for k, v in r.metrics.items() if k not in TIMING} for r in results]
    return {"start": start, "metrics": metrics}


def _read_hf_weights(rank: int, world: int, ckpt: str) -> dict[str, torch.Tensor]:
    """The HF-named (layout-independent) tensors of a Megatron checkpoint, read in one process."""
    import torch.distributed as dist

    from megatron_bgpo.checkpointing.llada_mapping import layers_of, model_mappings, to_hf
    from megatron_bgpo.checkpointing.megatron_io import MegatronCheckpointReader

    dist.init_process_group("gloo")
    reader = MegatronCheckpointReader(ckpt)
    reader.check()
    out: dict[str, torch.Tensor] = {}
    for m in model_mappings(reader.cfg):
        for layer in layers_of(m, reader.cfg):
            out.update(to_hf(m, reader.cfg, layer, reader.read(m, layer)))
    return out


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory) -> dict:
    """The TP=2 reference (4 steps) and its step-2 checkpoint (saved by a separate 2-step run)."""
    root = tmp_path_factory.mktemp("layouts")
    ref_dir, half = str(root / "reference"), str(root / "half")
    full = run_distributed(_train_rank, 2, flags(files, save=ref_dir, **REFERENCE))
    first = run_distributed(_train_rank, 2, flags(files, train_steps=2, save=half, **REFERENCE))
    assert first[0]["metrics"] == full[0]["metrics"][:2]  # same layout up to the checkpoint
    assert all(m["grad_norm"] > 0 for m in full[0]["metrics"]), full[0]["metrics"]  # the policy moves
    return {"root": root, "full": full[0]["metrics"], "half": half, "weights": _weights(ref_dir)}


def _weights(ckpt: str) -> dict[str, torch.Tensor]:
    (weights,) = run_distributed(_read_hf_weights, 1, ckpt)
    return weights


def _resume(
    files, runs, name: str, drop_adam_state: bool = False
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    world, layout = LAYOUTS[name]
    out = str(runs["root"] / (name + ("_fresh_adam" if drop_adam_state else "")))
    argv = flags(files, objective="bgpo", task=DENSE_TASK, load=runs["half"], save=out, **layout)
    ranks = run_distributed(_train_rank, world, argv, drop_adam_state)
    assert all(r["start"] == 2 for r in ranks)
    return ranks[0]["metrics"], _weights(out)


def assert_metrics_match(metrics: list[dict], expected: list[dict]) -> float:
    """Per-step metrics of a run at another layout: `EXACT` keys equal, the rest to fp32 rounding.
    Returns the largest relative difference."""
    assert len(metrics) == len(expected)
    worst = 0.0
    for got, want in zip(metrics, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            if key in EXACT:
                assert got[key] == want[key], key
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
                worst = max(worst, abs(got[key] - want[key]) / max(abs(want[key]), 1e-12))
    return worst


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_resume_at_another_layout_continues_the_run(files, runs, layout: str) -> None:
    metrics, weights = _resume(files, runs, layout)
    assert len(metrics) == 2
    worst = assert_metrics_match(metrics, runs["full"][2:])
    diff = _max_diff(weights, runs["weights"])
    print(f"{layout}: max |weight - reference| = {diff:.3g}, max relative metric difference {worst:.3g}")
    assert diff <= WEIGHT_ATOL


def test_a_fresh_optimizer_at_the_new_layout_is_detected(files, runs) -> None:
    """Control: the same resume without the loaded Adam moments ends far from the reference weights."""
    _, weights = _resume(files, runs, "tp1_dp2", drop_adam_state=True)
    diff = _max_diff(weights, runs["weights"])
    print(f"fresh Adam: max |weight - reference| = {diff:.3g}")
    assert diff > 100 * WEIGHT_ATOL
