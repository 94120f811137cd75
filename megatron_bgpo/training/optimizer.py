"""Megatron-core optimizer (Adam with decoupled weight decay) and learning-rate schedule.

The distributed optimizer is used only with CUDA: megatron-core 0.19's DistributedOptimizer requires
torch.cuda.*Tensor parameters. On CPU the same code path builds the FP32 optimizer over torch AdamW.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_bgpo.training.config import OptimArgs


def use_distributed_optimizer(args: OptimArgs) -> bool:
    return args.use_distributed_optimizer and torch.cuda.is_available()


def build_optimizer(
    args: OptimArgs, model: Sequence[torch.nn.Module], params_dtype: torch.dtype, train_steps: int
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
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if args.lr_warmup_steps > 0 else args.lr,
        max_lr=args.lr,
        min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_steps,
        lr_decay_steps=max(train_steps, args.lr_warmup_steps + 1),
        lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay,
        end_wd=args.weight_decay,
        wd_incr_steps=max(train_steps, 1),
        wd_incr_style="constant",
    )
    return optimizer, scheduler
