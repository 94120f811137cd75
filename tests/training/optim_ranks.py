"""Per-rank optimizer runs for the distributed-optimizer and bf16 tests: a tiny LLaDA with known weights,
trained for a few Adam steps on a fixed BGPO batch through `Policy` (megatron DDP + megatron optimizer).

Each rank returns, per step, the batch loss, the full (DP-reduced) gradient and the weights after the
step, all as logical (TP=1) fp32 tensors keyed like tests/rl/test_update_layouts.py, so runs at any
layout, optimizer or dtype compare key by key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from megatron_bgpo.checkpointing.llada_mapping import (
    MAPPINGS,
    dict_reader,
    iter_stage_tensors,
    load_hf_into_model,
)
from megatron_bgpo.models.llada import get_preset
from megatron_bgpo.models.llada.reference import random_hf_weights
from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
from megatron_bgpo.rl.microbatches import build_microbatches
from megatron_bgpo.rl.objectives import ObjectiveConfig, get_objective
from megatron_bgpo.training import checkpoint as ckpt
from megatron_bgpo.training.config import CheckpointArgs, OptimArgs
from megatron_bgpo.training.policy import Policy, params_dtype
from tests.rl.test_update_layouts import _merge_tp, _packing, _rollout

PRESET = "tiny-gqa"
TOTAL_UPDATES = 8  # the LR schedule's horizon, alike in every run (constant LR: no run gets that far)


@dataclass(frozen=True)
class Run:
    """One training run: layout, optimizer, dtype, steps; optional save after a step / load at start."""

    tp: int = 1
    distributed_optimizer: bool = False
    params_dtype: str = "fp32"
    steps: int = 3
    objective: str = "bgpo"
    save: str | None = None
    save_after: int | None = None  # save a checkpoint after this many steps (None: no save)
    load: str | None = None
    drop_adam_state: bool = False  # after --load: forget the Adam moments (the control)
    finetune: bool = False  # --load weights only (fresh optimizer, step 0)


class _StubTokenizer:
    """What `training.checkpoint.save` needs from a tokenizer: a ``save_pretrained`` writing a file."""

    def save_pretrained(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "tokenizer.txt").write_text("stub\n")


def _full_grads(policy) -> None:
    """Make every ``main_grad`` hold the full DP-summed gradient: with the distributed optimizer DDP
    reduce-scatters, so each DP rank holds only its shard of each bucket; all-gather the shards back."""
    for ddp in policy.model:
        if not ddp.ddp_config.use_distributed_optimizer:
            continue  # all-reduced: every rank holds the full sum
        for bucket_group in ddp.bucket_groups:
            group = bucket_group.intra_distributed_optimizer_instance_group
            size, rank = group.size(), group.rank()
            for bucket in bucket_group.buckets:
                shard = bucket.grad_data.numel() // size
                local = bucket.grad_data[rank * shard : (rank + 1) * shard].clone()
                dist.all_gather_into_tensor(bucket.grad_data, local, group=group)


def _logical(policy, attr: str | None) -> dict:
    """{(megatron name, layer): this rank's tensor} of the weights (attr None) or of ``attr``."""
    out = {}
    for ddp in policy.model:
        chunk = ddp.module
        params = dict(chunk.named_parameters())
        for name, m, layer in iter_stage_tensors(chunk):
            p = params[name]
            out[(m.megatron, layer)] = (p if attr is None else getattr(p, attr)).detach().float().clone()
    return out


def _batch(step: int, dp: int, dp_rank: int, objective_name: str):
    batch = _rollout()
    per = len(batch) // dp
    local = batch.select(torch.arange(dp_rank * per, (dp_rank + 1) * per))
    packing = dataclasses.replace(_packing(mbs=4), seed=100 + step)  # fresh masks each step, any layout
    return build_microbatches(local, get_objective(objective_name), packing)


def train_rank(rank: int, world: int, run: Run) -> dict:
    """Build the policy at ``run``'s layout, load known weights (or ``run.load``), run the steps."""
    parallel = ParallelConfig(run.tp, 1)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(1234)
    cfg = get_preset(PRESET)
    optim = OptimArgs(lr=1e-3, clip_grad=1.0, use_distributed_optimizer=run.distributed_optimizer)
    policy = Policy.build(
        cfg, parallel, groups, params_dtype(run.params_dtype), optim=optim, total_updates=(TOTAL_UPDATES, 1)
    )
    start = 0
    if run.load is None:
        weights = random_hf_weights(cfg, seed=3)
        for ddp in policy.model:
            load_hf_into_model(ddp.module, cfg, dict_reader(weights), groups.tp_rank, run.tp)
        policy.optimizer.reload_model_params()  # fp32 main weights (bf16, distributed) from the model
    else:
        start = policy.load(CheckpointArgs(load=run.load, finetune=run.finetune), None).step
        if run.drop_adam_state:
            for opt in getattr(policy.optimizer, "chained_optimizers", [policy.optimizer]):
                opt.optimizer.state.clear()
    loaded = _logical(policy, None)
    objective = get_objective(run.objective)
    main_dtypes = sorted({str(p.dtype) for g in policy.optimizer.param_groups for p in g["params"]})
    steps = []
    for step in range(start, start + run.steps):
        mbs = _batch(step, groups.dp_size, groups.dp_rank, run.objective)
        stats = policy.gradients(mbs, objective, ObjectiveConfig())
        _full_grads(policy)
        grads = _logical(policy, "main_grad")
        loss, grad_norm, _ = policy.update(
            _batch(step, groups.dp_size, groups.dp_rank, run.objective),
            objective,
            ObjectiveConfig(),
            where=f"step {step}",
        )
        steps.append(
            {
                "loss": loss,
                "local_loss": stats.loss,
                "grad_norm": grad_norm,
                "grads": grads,
                "weights": _logical(policy, None),
            }
        )
        if run.save is not None and run.save_after == step + 1:
            train_cfg = SimpleNamespace(checkpoint=SimpleNamespace(save=run.save, load=None, keep_last=0))
            ckpt.save(
                train_cfg,
                step + 1,
                policy.model,
                policy.optimizer,
                policy.scheduler,
                cfg,
                _StubTokenizer(),
                ckpt.Progress(step + 1),
            )
    return {
        "tp_rank": groups.tp_rank,
        "dp_rank": groups.dp_rank,
        "start": start,
        "steps": steps,
        "loaded": loaded,
        "main_dtypes": main_dtypes,
        "optimizer": type(policy.optimizer).__name__,
        "inner": [type(o).__name__ for o in getattr(policy.optimizer, "chained_optimizers", [])],
    }


def merge_run(results: list[dict]) -> list[dict]:
    """Per step: loss (replica sum), grad norm and logical (TP-merged) grads / weights of DP rank 0."""
    mapping = {m.megatron: m for m in MAPPINGS}
    ranks = sorted((r for r in results if r["dp_rank"] == 0), key=lambda r: r["tp_rank"])
    out = []
    for i, first in enumerate(ranks[0]["steps"]):
        merged = {"loss": first["loss"], "grad_norm": first["grad_norm"]}
        for what in ("grads", "weights"):
            merged[what] = {
                key: _merge_tp(mapping[key[0]], [r["steps"][i][what][key] for r in ranks])
                for key in first[what]
            }
        out.append(merged)
    return out


def max_rel(a: dict, b: dict) -> float:
    """Largest per-tensor relative L2 difference of two logical tensor dicts (same keys)."""
    assert a.keys() == b.keys()
    return max(
        ((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp_min(1e-30)).item() for k in a
    )


def max_abs(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
