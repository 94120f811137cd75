"""Megatron's MoE layer run sequence-parallel inside a model that is not (MoE training at TP > 1).

Without sequence parallelism every TP rank holds the whole sequence, and megatron's token dispatcher
(which assumes sequence-sharded input at TP > 1) sends each token's copy from every TP rank to the
experts: expert gradients come out TP times too large, which is why megatron's `MoELayer` refuses a
training-mode forward at TP > 1 without it. The rest of this model does not run sequence-parallel
(the local spec's torch norms and the RL update's ranged log-prob forward do not support it), so
`SequenceParallelMoELayer` makes the MoE layer alone sequence-parallel:

- forward: the replicated input ``[s, b, h]`` is padded to a multiple of TP along ``s``, each TP rank
  keeps its slice (`scatter_to_sequence_parallel_region`; backward all-gathers the slice gradients, so
  the input gradient is whole and equal on every rank, as a replicated activation's must be), megatron's
  MoE layer runs with ``sequence_parallel=True`` (router, alltoall dispatch over TP x EP, experts,
  shared expert), and the output slices are all-gathered (backward: each rank keeps its slice of the
  replicated output gradient, ``tensor_parallel_output_grad=False``) and the padding is cut;
- pad positions carry zero inputs, their outputs are dropped (zero gradient), and they are excluded from
  the router's aux / z losses through megatron's ``padding_mask`` (True = pad);
- the router weight is replicated over TP but each rank now routes only its slice, so its gradient is
  partial: `allreduce_router_grads` sums it over TP (called by parallel/ddp.py's finalize after
  megatron's own finalize_model_grads, which does this only for models built sequence-parallel).

At TP = 1 the layer is megatron's `MoELayer` unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from megatron.core.tensor_parallel.mappings import (
    gather_from_sequence_parallel_region,
    scatter_to_sequence_parallel_region,
)
from megatron.core.transformer.moe.moe_layer import MoELayer
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class SequenceParallelMoELayer(MoELayer):
    """`MoELayer` that scatters its replicated input over TP along the sequence and gathers its output."""

    def __init__(self, config, submodules=None, layer_number=None, pg_collection=None, **kwargs):
        tp = pg_collection.tp.size() if pg_collection is not None else config.tensor_model_parallel_size
        self.scatters = tp > 1 and not config.sequence_parallel
        if self.scatters:
            config = copy.copy(config)  # this layer only; the model's config stays non-SP
            config.sequence_parallel = True
        super().__init__(config, submodules, layer_number, pg_collection, **kwargs)

    def forward(self, hidden_states: torch.Tensor, intermediate_tensors=None, padding_mask=None):
        """hidden_states: [s, b, h], replicated over TP. padding_mask: [b, s] bool, True = pad, or None.
        Returns (output [s, b, h] replicated over TP, bias or None)."""
        if not self.scatters or intermediate_tensors is not None:  # partial CUDA-graph phases: as is
            return super().forward(hidden_states, intermediate_tensors, padding_mask)
        tp_group = self.attn_tp_group
        tp, rank = tp_group.size(), tp_group.rank()
        s, b = hidden_states.shape[:2]
        pad = (-s) % tp
        if pad or padding_mask is not None:
            mask = torch.zeros(b, s + pad, dtype=torch.bool, device=hidden_states.device)
            mask[:, s:] = True
            if padding_mask is not None:
                mask[:, :s] = padding_mask.bool()
            local = (s + pad) // tp
            padding_mask = mask[:, rank * local : (rank + 1) * local]
        if pad:
            hidden_states = torch.nn.functional.pad(hidden_states, (0, 0, 0, 0, 0, pad))
        local_input = scatter_to_sequence_parallel_region(hidden_states, group=tp_group)
        output, bias = super().forward(local_input, None, padding_mask)
        output = gather_from_sequence_parallel_region(
            output, tensor_parallel_output_grad=False, group=tp_group
        )
        return output[:s], bias


def allreduce_router_grads(chunks: Iterable[torch.nn.Module]) -> int:
    """Sum over TP the router gradients of every scattering `SequenceParallelMoELayer` in ``chunks``
    (``main_grad`` under megatron DDP, else ``grad``); returns the number of tensors reduced."""
    by_group: dict[object, list[torch.Tensor]] = {}
    for chunk in chunks:
        for module in chunk.modules():
            if not (isinstance(module, SequenceParallelMoELayer) and module.scatters):
                continue
            for param in module.router.parameters():
                grad = getattr(param, "main_grad", None)
                grad = param.grad if grad is None else grad
                if param.requires_grad and grad is not None:
                    by_group.setdefault(module.attn_tp_group, []).append(grad)
    for group, grads in by_group.items():
        flat = _flatten_dense_tensors(grads)
        torch.distributed.all_reduce(flat, group=group)
        for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(reduced)
    return sum(len(g) for g in by_group.values())
