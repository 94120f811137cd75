"""A thin, explicit wrapper over megatron-core's pipeline schedules.

`run_microbatches` feeds a list of micro-batches through `get_forward_backward_func()`: 1F1B with
pipeline parallelism (interleaved with virtual stages), no pipelining otherwise. The caller gives a
``step(batch, model_chunk) -> (output, loss_fn)`` function, exactly megatron's ``forward_step``
contract minus the iterator plumbing. Every pipeline stage receives the same micro-batch sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from megatron.core.pipeline_parallel import get_forward_backward_func

StepFn = Callable[[Any, torch.nn.Module], tuple[torch.Tensor, Callable | None]]


def run_microbatches(
    model: torch.nn.Module | Sequence[torch.nn.Module],
    step: StepFn,
    microbatches: Sequence[Any],
    *,
    seq_length: int,
    micro_batch_size: int,
    forward_only: bool = False,
    collect_non_loss_data: bool = False,
    moe_aux_loss_weight: float | None = None,
) -> list[Any]:
    """Run all ``microbatches`` through the schedule; returns what the last stage's loss_fns reported.

    ``seq_length``/``micro_batch_size`` size the pipeline buffers (with ``variable_seq_lengths`` in
    the TransformerConfig shapes are exchanged per micro-batch and these are only hints).
    ``moe_aux_loss_weight``: weight of each micro-batch's router load-balancing loss (on top of
    ``moe_aux_loss_coeff``) for MoE models; None = 1 / len(microbatches), so a step's aux term is
    coeff x the mean over its micro-batches whatever their number (docs/moe.md). megatron's own default
    with ``calculate_per_token_loss`` would be weight 1 per micro-batch (a sum).
    """
    if not microbatches:
        raise ValueError("run_microbatches: no micro-batches")
    chunks = list(model) if isinstance(model, (list, tuple)) else [model]
    weight = 1.0 / len(microbatches) if moe_aux_loss_weight is None else float(moe_aux_loss_weight)
    for chunk in chunks:
        _set_moe_aux_weight(chunk, weight)

    def forward_step(data_iterator, model_chunk):
        return step(next(data_iterator), model_chunk)

    iterators = [iter(microbatches) for _ in chunks]
    forward_backward = get_forward_backward_func()
    return forward_backward(
        forward_step_func=forward_step,
        data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks if len(chunks) > 1 else chunks[0],
        num_microbatches=len(microbatches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=forward_only,
        collect_non_loss_data=collect_non_loss_data,
    )


def _set_moe_aux_weight(chunk: torch.nn.Module, weight: float) -> None:
    """Route the schedule's MoE aux-loss scale (`MoEAuxLossAutoScaler`, set per micro-batch from
    ``config.moe_grad_scale_func``) to ``weight`` x the main loss scale (the fp16 grad scaler's, else 1)."""
    config = getattr(chunk, "config", None)
    if config is None or not getattr(config, "num_moe_experts", None):
        return
    grad_scale = config.grad_scale_func

    def scale() -> torch.Tensor:
        base = grad_scale(torch.ones(1)) if grad_scale is not None else torch.ones(1)
        return base.reshape(1) * weight

    config.moe_grad_scale_func = scale
