"""Model provider: all pipeline (and virtual pipeline) chunks of LLaDA this rank holds."""

from __future__ import annotations

import torch
from megatron.core.models.hybrid.hybrid_model import HybridModel

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.model import build_llada_model
from megatron_bgpo.models.llada.transformer_config import to_transformer_config
from megatron_bgpo.parallel import cpu_compat
from megatron_bgpo.parallel.distributed import ParallelConfig


def build_model_chunks(
    cfg: LLaDAConfig,
    parallel: ParallelConfig,
    pg_collection=None,
    params_dtype: torch.dtype = torch.float32,
    use_te: bool | None = None,
    **transformer_overrides,
) -> list[HybridModel]:
    """One HybridModel per virtual stage (a single-element list without virtual pipelining)."""
    tcfg = to_transformer_config(cfg, parallel, params_dtype=params_dtype, **transformer_overrides)
    vpp = parallel.virtual_pipeline_model_parallel_size
    stages = [None] if vpp is None else list(range(vpp))
    chunks = [build_llada_model(cfg, tcfg, pg_collection, vp_stage=s, use_te=use_te) for s in stages]
    for chunk in chunks:
        _params_to(chunk, params_dtype)
    return [cpu_compat.to_device(c) for c in chunks]


@torch.no_grad()
def _params_to(chunk: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every parameter in ``dtype``. megatron-core's local-spec RMSNorm (torch.nn.RMSNorm) ignores
    ``params_dtype`` and builds fp32 weights, unlike TE's norm; megatron's Float16Module would cast them.
    A bf16 model with fp32 norms breaks `Float16OptimizerWithFloat16Params.sharded_state_dict` (its
    parameter map covers the 16-bit parameters only: "Param id N does not match any model sharded
    param"). Parameters keep their identity (attributes such as tensor_model_parallel stay)."""
    for p in chunk.parameters():
        if p.dtype != dtype and p.is_floating_point():
            p.data = p.data.to(dtype)
