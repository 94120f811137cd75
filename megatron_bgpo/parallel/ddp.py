"""Megatron DDP wrapping and the schedule hooks that make gradients *sum* exactly.

RL losses here are sums of per-row terms whose global coefficients are fixed before the update
(rl/objectives.py). So gradients must be summed, never averaged: over micro-batches (megatron-core
divides each micro-batch loss by the number of micro-batches unless ``calculate_per_token_loss``
is set and the loss function returns a token count) and over data-parallel replicas (megatron
DDP sums instead of averaging under the same flag). We set that flag, report a count of 1, and
finalize gradients without any num-tokens rescaling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.transformer import TransformerConfig

from megatron_bgpo.models.llada.moe_sequence_parallel import allreduce_router_grads


def _finalize_sum(model, num_tokens=None, pg_collection=None, force_all_reduce=False):
    """finalize_model_grads without the per-token rescaling: DP all-reduce (sum), PP embedding sync;
    then the TP sum of the router gradients of MoE layers run sequence-parallel in a non-SP model."""
    finalize_model_grads(
        model, num_tokens=None, pg_collection=pg_collection, force_all_reduce=force_all_reduce
    )
    allreduce_router_grads(model)


def wrap_ddp(
    chunks: Sequence[torch.nn.Module],
    use_distributed_optimizer: bool = False,
    overlap_grad_reduce: bool = False,
    grad_reduce_in_fp32: bool = True,
    pg_collection=None,
) -> list[DistributedDataParallel]:
    """Wrap model chunks in megatron DDP and install summing schedule hooks on their config."""
    config: TransformerConfig = chunks[0].config
    if not config.calculate_per_token_loss:
        raise ValueError(
            "wrap_ddp: build the model with calculate_per_token_loss=True so megatron-core sums "
            "micro-batch and data-parallel gradients (see megatron_bgpo/parallel/ddp.py)"
        )
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=grad_reduce_in_fp32,
        overlap_grad_reduce=overlap_grad_reduce,
        use_distributed_optimizer=use_distributed_optimizer,
        average_in_collective=False,
    )
    wrapped = [
        DistributedDataParallel(
            config, ddp_config, chunk, disable_bucketing=i > 0, pg_collection=pg_collection
        )
        for i, chunk in enumerate(chunks)
    ]
    config.finalize_model_grads_func = _finalize_sum
    config.no_sync_func = [w.no_sync for w in wrapped] if len(wrapped) > 1 else wrapped[0].no_sync
    if overlap_grad_reduce:
        config.grad_sync_func = (
            [w.start_grad_sync for w in wrapped] if len(wrapped) > 1 else wrapped[0].start_grad_sync
        )
    return wrapped


def zero_grads(wrapped: Sequence[DistributedDataParallel], optimizer=None) -> None:
    """Zero the DDP gradient buffers and the optimizer's ``param.grad`` (call before each accumulation).

    The optimizer matters after its first step: megatron's optimizer points ``param.grad`` at
    ``main_grad``; left in place, the next backward accumulates into main_grad twice.
    """
    for w in wrapped:
        w.zero_grad_buffer()
    if optimizer is not None:
        optimizer.zero_grad()
