"""iLLaDA-8B (Base, Instruct; GSAI-ML, 2026): ``ILLaDAForCausalLM``, HF-llama-style names and config.

Sources (docs/models.md lists which facts are verified and which are not):
- modeling: the published ``modeling_illada.py`` (Apache-2.0, (c) ByteDance; a copy is in the code store,
  file id 62208522495): llama block with RMSNorm (fp32 normalise, cast, times weight) unless
  ``layer_norm_eps`` is set (then LayerNorm: rejected here), rotate-half RoPE (default type only,
  head_dim = hidden_size / num_attention_heads), GQA by ``num_key_value_heads``, SwiGLU
  ``down(silu(gate(x)) * up(x))``, full bidirectional attention, ``attention_bias`` / ``mlp_bias``
  biases (rejected when true), ``lm_head`` tied to ``model.embed_tokens`` by ``tie_word_embeddings``.
- config / tokenizer: iLLaDA-8B-Base's config.json and tokenizer as read by a third-party test
  (code store file id 70975542674): ``architectures`` ``ILLaDAForCausalLM``, hidden_size 4096,
  32 layers, 8 KV heads, vocab 155136, max_position_embeddings 8192, tied embeddings; no
  ``mask_token_id`` in the config, the mask token ``<[MASK]>`` is tokenizer id 5 (the upstream LLaDA
  README: "setting mask_id=5"). ``model_type`` was not found; "illada" is assumed.
Every number comes from the config file (or the tokenizer for the mask id); nothing is defaulted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from megatron_bgpo.checkpointing.mappings import Architecture, register
from megatron_bgpo.checkpointing.mappings.base import TensorMapping
from megatron_bgpo.models.llada.config import LLaDAConfig

MASK_TOKEN = "<[MASK]>"
L = "model.layers.{layer}."
A, M = "attention", "mlp"
MAPPINGS: tuple[TensorMapping, ...] = (
    TensorMapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), "vocab"),
    TensorMapping(
        "input_layernorm.weight",
        (L + "input_layernorm.weight",),
        "replicated",
        A,
        te_megatron="self_attention.linear_qkv.layer_norm_weight",
    ),
    TensorMapping(
        "self_attention.linear_qkv.weight",
        (L + "self_attn.q_proj.weight", L + "self_attn.k_proj.weight", L + "self_attn.v_proj.weight"),
        "qkv",
        A,
    ),
    TensorMapping("self_attention.linear_proj.weight", (L + "self_attn.o_proj.weight",), "row", A),
    TensorMapping(
        "pre_mlp_layernorm.weight",
        (L + "post_attention_layernorm.weight",),
        "replicated",
        M,
        te_megatron="mlp.linear_fc1.layer_norm_weight",
    ),
    TensorMapping("mlp.linear_fc1.weight", (L + "mlp.gate_proj.weight", L + "mlp.up_proj.weight"), "glu", M),
    TensorMapping("mlp.linear_fc2.weight", (L + "mlp.down_proj.weight",), "row", M),
    TensorMapping("decoder.final_norm.weight", ("model.norm.weight",), "replicated"),
    TensorMapping("output_layer.weight", ("lm_head.weight",), "vocab"),  # only when not tied
)
BLOCK = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)
TYPE_ORDER = (
    "model.embed_tokens.weight",
    *(f"model.layers.{{i}}.{n}" for n in BLOCK),
    "model.norm.weight",
    "lm_head.weight",
)

# config.json field -> LLaDAConfig field (every one required: no invented defaults).
FIELDS = {
    "hidden_size": "d_model",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "intermediate_size": "mlp_hidden_size",
    "vocab_size": "vocab_size",
    "rope_theta": "rope_theta",
    "rms_norm_eps": "rms_norm_eps",
    "max_position_embeddings": "max_sequence_length",
    "tie_word_embeddings": "weight_tying",
    "eos_token_id": "eos_token_id",
}
# Fields whose value selects code paths of modeling_illada.py we do not implement.
_UNSUPPORTED = {
    "layer_norm_eps": (None,),  # set -> nn.LayerNorm with bias instead of RMSNorm
    "attention_bias": (False, None),
    "mlp_bias": (False, None),
    "hidden_act": ("silu",),
    "rope_scaling": (None, {}),
}


def hf_shapes(cfg: LLaDAConfig) -> dict[str, tuple[int, ...]]:
    d, f, hd = cfg.d_model, cfg.mlp_hidden_size, cfg.head_dim
    block = dict(
        zip(
            BLOCK,
            [(d,), (cfg.n_heads * hd, d), (cfg.n_kv_heads * hd, d), (cfg.n_kv_heads * hd, d)]
            + [(d, cfg.n_heads * hd), (d,), (f, d), (f, d), (d, f)],
            strict=True,
        )
    )
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.embedding_size, d)}
    for i in range(cfg.n_layers):
        shapes.update({f"model.layers.{i}.{n}": s for n, s in block.items()})
    shapes["model.norm.weight"] = (d,)
    if not cfg.weight_tying:
        shapes["lm_head.weight"] = (cfg.embedding_size, d)
    return shapes


def parse_config(data: dict[str, Any], tokens: Mapping[str, int], source: str) -> LLaDAConfig:
    """`LLaDAConfig` of an iLLaDA config.json; the mask id is ``mask_token_id`` if the config states it
    (our exports do), else the tokenizer's ``<[MASK]>`` id; both present must agree."""
    missing = [k for k in FIELDS if data.get(k) is None]
    if missing:
        raise ValueError(f"{source}: missing required iLLaDA fields {missing}")
    for key, allowed in _UNSUPPORTED.items():
        if data.get(key) not in allowed and not (key == "rope_scaling" and _default_rope(data[key])):
            raise ValueError(
                f"{source}: iLLaDA {key}={data.get(key)!r} is not supported (supported: {list(allowed)})"
            )
    if data.get("head_dim") not in (None, data["hidden_size"] // data["num_attention_heads"]):
        raise ValueError(f"{source}: iLLaDA head_dim={data['head_dim']} != hidden_size / num_attention_heads")
    mask = data.get("mask_token_id")
    if mask is not None and MASK_TOKEN in tokens and tokens[MASK_TOKEN] != mask:
        raise ValueError(
            f"{source}: mask_token_id={mask} but the tokenizer has {MASK_TOKEN}={tokens[MASK_TOKEN]}"
        )
    if mask is None:
        mask = tokens.get(MASK_TOKEN)
    if mask is None:
        raise ValueError(
            f"{source}: iLLaDA config.json has no mask_token_id and no tokenizer file beside it defines "
            f"{MASK_TOKEN} (copy tokenizer.json / tokenizer_config.json next to config.json)"
        )
    eos = data["eos_token_id"]
    if isinstance(eos, list):
        raise ValueError(f"{source}: eos_token_id={eos} (a list) is not supported; one id expected")
    kwargs = {ours: data[theirs] for theirs, ours in FIELDS.items()}
    consumed = {*FIELDS, "mask_token_id", "pad_token_id"}
    return LLaDAConfig(
        **kwargs,
        embedding_size=data["vocab_size"],
        mask_token_id=mask,
        pad_token_id=data["pad_token_id"] if data.get("pad_token_id") is not None else eos,
        family="illada",
        extra={k: v for k, v in data.items() if k not in consumed},
    )


def _default_rope(scaling: Any) -> bool:
    """True for a ``rope_scaling`` that modeling_illada.py accepts (default type, factor 1)."""
    return (
        isinstance(scaling, dict)
        and scaling.get("rope_type", scaling.get("type", "default")) == "default"
        and scaling.get("factor", 1.0) == 1.0
    )


def to_hf_config(cfg: LLaDAConfig) -> dict[str, Any]:
    """iLLaDA config.json content: carried-through fields, the typed ones, and ``mask_token_id``."""
    if cfg.embedding_size != cfg.vocab_size:
        raise ValueError(
            f"iLLaDA has one vocab size; embedding_size={cfg.embedding_size} != {cfg.vocab_size}"
        )
    data = dict(cfg.extra)
    data.update({theirs: getattr(cfg, ours) for theirs, ours in FIELDS.items()})
    data.update(mask_token_id=cfg.mask_token_id, pad_token_id=cfg.pad_token_id)
    data.setdefault("architectures", ["ILLaDAForCausalLM"])
    data.setdefault("model_type", "illada")
    data.setdefault("hidden_act", "silu")  # the only activation implemented (kept from the source otherwise)
    return data


ILLADA = register(
    Architecture(
        name="illada",
        hf_architectures=("ILLaDAForCausalLM",),
        model_types=("illada",),
        hf_prefix="",
        tensors=lambda cfg: MAPPINGS,
        hf_shapes=hf_shapes,
        parse_config=parse_config,
        to_hf_config=to_hf_config,
        type_order=TYPE_ORDER,
        embedding="model.embed_tokens.weight",
        output="lm_head.weight",
        special_tokens=(MASK_TOKEN,),
    )
)
