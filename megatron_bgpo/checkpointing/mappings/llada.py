"""LLaDA-8B (Base, Instruct) and LLaDA-1.5: ``LLaDAModelLM``, model_type ``llada``.

HF tensors (spec §1.2) under ``model.transformer.``: ``wte``, per block ``attn_norm``, ``q/k/v_proj``,
``attn_out``, ``ff_norm``, ``ff_proj`` (gate), ``up_proj``, ``ff_out`` (down), then ``ln_f`` and the
untied head ``ff_out``. LLaDA-1.5 is this architecture with VRPO-trained weights (its config.json is
LLaDA-8B-Instruct's; see tests/checkpointing/test_registry.py for the source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from megatron_bgpo.checkpointing.mappings import Architecture, register
from megatron_bgpo.checkpointing.mappings.base import TensorMapping
from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.reference import hf_tensor_shapes

HF_PREFIX = "model.transformer."

A, M = "attention", "mlp"
MAPPINGS: tuple[TensorMapping, ...] = (
    TensorMapping("embedding.word_embeddings.weight", ("wte.weight",), "vocab"),
    TensorMapping(
        "input_layernorm.weight",
        ("blocks.{layer}.attn_norm.weight",),
        "replicated",
        A,
        te_megatron="self_attention.linear_qkv.layer_norm_weight",
    ),
    TensorMapping(
        "self_attention.linear_qkv.weight",
        ("blocks.{layer}.q_proj.weight", "blocks.{layer}.k_proj.weight", "blocks.{layer}.v_proj.weight"),
        "qkv",
        A,
    ),
    TensorMapping("self_attention.linear_proj.weight", ("blocks.{layer}.attn_out.weight",), "row", A),
    TensorMapping(
        "pre_mlp_layernorm.weight",
        ("blocks.{layer}.ff_norm.weight",),
        "replicated",
        M,
        te_megatron="mlp.linear_fc1.layer_norm_weight",
    ),
    TensorMapping(
        "mlp.linear_fc1.weight", ("blocks.{layer}.ff_proj.weight", "blocks.{layer}.up_proj.weight"), "glu", M
    ),
    TensorMapping("mlp.linear_fc2.weight", ("blocks.{layer}.ff_out.weight",), "row", M),
    TensorMapping("decoder.final_norm.weight", ("ln_f.weight",), "replicated"),
    TensorMapping("output_layer.weight", ("ff_out.weight",), "vocab"),
)

# The released LLaDA-8B shards' by-type order (spec §1.2: attn_out + wte + ln_f in shard 1, block ff_out
# next, then norms, q, k, v, ff_proj, up_proj; the head closes the last shard).
TYPE_ORDER = (
    "blocks.{i}.attn_out.weight",
    "wte.weight",
    "ln_f.weight",
    "blocks.{i}.ff_out.weight",
    "blocks.{i}.attn_norm.weight",
    "blocks.{i}.ff_norm.weight",
    "blocks.{i}.q_proj.weight",
    "blocks.{i}.k_proj.weight",
    "blocks.{i}.v_proj.weight",
    "blocks.{i}.ff_proj.weight",
    "blocks.{i}.up_proj.weight",
    "ff_out.weight",
)


def _parse(data: dict[str, Any], tokens: Mapping[str, int], source: str) -> LLaDAConfig:
    return LLaDAConfig.from_dict(data, source)  # LLaDA's config.json states every special id itself


LLADA = register(
    Architecture(
        name="llada",
        hf_architectures=("LLaDAModelLM",),
        model_types=("llada",),
        hf_prefix=HF_PREFIX,
        tensors=lambda cfg: MAPPINGS,
        hf_shapes=hf_tensor_shapes,
        parse_config=_parse,
        to_hf_config=LLaDAConfig.llada_dict,
        type_order=TYPE_ORDER,
        embedding="wte.weight",
        output="ff_out.weight",
    )
)
