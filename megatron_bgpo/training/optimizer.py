"""Megatron-core optimizer (Adam with decoupled weight decay) and learning-rate schedule.

``--use-distributed-optimizer`` builds megatron-core's DistributedOptimizer (optimizer state and fp32
main weights sharded over DP) on CUDA and on CPU alike (on CPU through parallel/cpu_compat.py, over
torch's AdamW); ``--params-dtype bf16`` keeps fp32 main weights in the optimizer.

The scheduler steps once per optimizer update, and an off-policy RL step makes
``updates_per_rollout`` updates, so its horizon is counted in updates: ``--train-steps`` and
``--lr-warmup-steps`` (both in RL steps) are multiplied by :func:`updates_per_step`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_bgpo.training.config import OptimArgs, TrainConfig


def use_distributed_optimizer(args: OptimArgs) -> bool:
    """Whether megatron-core's DistributedOptimizer runs (``--use-distributed-optimizer``)."""
    return args.use_distributed_optimizer


def updates_per_step(cfg: TrainConfig) -> int:
    """Optimizer updates per training step: 1 for SFT objectives, ``updates_per_rollout`` for RL."""
    from megatron_bgpo.rl.objectives import get_objective

    return 1 if get_objective(cfg.rl.objective).supervised else cfg.rl.updates_per_rollout


def build_scheduler(
    args: OptimArgs, optimizer, train_steps: int, updates_per_step: int = 1
) -> OptimizerParamScheduler:
    """LR schedule over ``train_steps * updates_per_step`` optimizer updates (warm-up scaled alike)."""
    warmup = args.lr_warmup_steps * updates_per_step
    total = train_steps * updates_per_step
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if warmup > 0 else args.lr,
        max_lr=args.lr,
        min_lr=args.min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=max(total, warmup + 1),
        lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay,
        end_wd=args.weight_decay,
        wd_incr_steps=max(total, 1),
        wd_incr_style="constant",
    )


def build_optimizer(
    args: OptimArgs,
    model: Sequence[torch.nn.Module],
    params_dtype: torch.dtype,
    train_steps: int,
    updates_per_step: int = 1,
) -> tuple[MegatronOptimizer, OptimizerParamScheduler]:
    config = OptimizerConfig(
        optimizer="adam",
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1,
        adam_beta2=args.adam_beta2,
        adam_eps=args.adam_eps,
        clip_grad=args.clip_grad,
        bf16=params_dtype == torch.bfloat16,
        params_dtype=params_dtype,
        use_distributed_optimizer=use_distributed_optimizer(args),
    )
    optimizer = get_megatron_optimizer(config, list(model))
    return optimizer, build_scheduler(args, optimizer, train_steps, updates_per_step)
