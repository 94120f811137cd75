"""Compatibility re-export: LLaDA's mapping now lives in megatron_bgpo/checkpointing/mappings/ (llada.py,
the machinery in base.py)."""

from megatron_bgpo.checkpointing.mappings.base import (  # noqa: F401
    Reader,
    TensorMapping,
    dict_reader,
    hf_sources,
    iter_stage_tensors,
    layers_of,
    load_hf_into_model,
    logical_shape,
    model_layer_map,
    model_mappings,
    read_local,
    stage_mappings,
    to_hf,
)
from megatron_bgpo.checkpointing.mappings.llada import HF_PREFIX, MAPPINGS, TYPE_ORDER  # noqa: F401
