"""`LLaDAConfig`: the HF ``config.json`` of a LLaDA checkpoint as a typed, validated dataclass.

Field names are those of LLaDA's HF config (spec §1.1); it is the one typed architecture the model builder
uses for every registered family (``family``: LLaDA, iLLaDA, ...; each family's config.json is parsed into it
by its file in megatron_bgpo/checkpointing/mappings/). Only llama blocks are supported (RMSNorm, SwiGLU,
RoPE, no biases, no ALiBi/QK-norm); anything else is rejected with a message naming the field, so a wrong
checkpoint never loads silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# LLaDA special token ids (spec §1.5).
LLADA_MASK_ID = 126336
LLADA_EOS_ID = 126081

# Fields that must hold these values for the architecture we implement.
_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = {
    "block_type": ("llama",),
    "activation_type": ("silu", "swiglu"),
    "layer_norm_type": ("rms",),
    "rope": (True,),
    "alibi": (False,),
    "include_bias": (False,),
    "include_qkv_bias": (False,),
    "attention_layer_norm": (False,),
    "input_emb_norm": (False,),
    "scale_logits": (False,),
    "bias_for_layer_norm": (False, None),
    "layer_norm_with_affine": (True,),
}


@dataclass(frozen=True)
class LLaDAConfig:
    """Architecture of a LLaDA model. head_dim = d_model / n_heads."""

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    mlp_hidden_size: int
    vocab_size: int
    embedding_size: int
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    max_sequence_length: int = 4096
    mask_token_id: int = LLADA_MASK_ID
    eos_token_id: int = LLADA_EOS_ID
    pad_token_id: int = LLADA_EOS_ID
    weight_tying: bool = False
    block_type: str = "llama"
    activation_type: str = "silu"
    layer_norm_type: str = "rms"
    rope: bool = True
    alibi: bool = False
    include_bias: bool = False
    include_qkv_bias: bool = False
    attention_layer_norm: bool = False
    input_emb_norm: bool = False
    scale_logits: bool = False
    bias_for_layer_norm: bool | None = False
    layer_norm_with_affine: bool = True
    # The architecture family (registry name) whose config.json this came from; to_dict writes that format.
    family: str = "llada"
    # Mixture of experts (LLaDA-MoE, models/llada/moe.py). Defaults mean "dense": num_experts 0.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    expert_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0  # 0: no shared expert
    moe_layer_freq: tuple[int, ...] = ()  # per block 1 = MoE, 0 = dense MLP; () = every block MoE
    qk_layernorm: bool = False  # RMSNorm over head_dim on q and k before RoPE (weights shared by heads)
    router_aux_loss_coef: float = 0.0  # load-balancing loss weight (0 = off; see docs/moe.md)
    # Unknown HF fields are carried through so an exported config.json keeps them (e.g. auto_map).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        positive = ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LLaDA config: {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"LLaDA config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(
                f"LLaDA config: n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"LLaDA config: head_dim={self.head_dim} must be even for rotary embeddings")
        if self.embedding_size < self.vocab_size:
            raise ValueError(
                f"LLaDA config: embedding_size={self.embedding_size} is smaller than "
                f"vocab_size={self.vocab_size}"
            )
        for name, allowed in _REQUIRED_VALUES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"LLaDA config: {name}={getattr(self, name)!r} is not supported "
                    f"(this implementation supports {name} in {list(allowed)})"
                )
        for name in ("mask_token_id", "eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, name) < self.embedding_size:
                raise ValueError(
                    f"LLaDA config: {name}={getattr(self, name)} is outside the embedding "
                    f"(embedding_size={self.embedding_size})"
                )
        object.__setattr__(self, "moe_layer_freq", tuple(self.moe_layer_freq))
        self._validate_moe()

    def _validate_moe(self) -> None:
        """MoE fields: all zero for a dense model; consistent sizes for an MoE one."""
        moe_ints = (
            "num_experts",
            "num_experts_per_tok",
            "expert_intermediate_size",
            "shared_expert_intermediate_size",
        )
        for name in moe_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"LLaDA config: {name} must be a non-negative integer, got {value!r}")
        if self.router_aux_loss_coef < 0:
            raise ValueError(f"LLaDA config: router_aux_loss_coef={self.router_aux_loss_coef} is negative")
        if self.num_experts == 0:
            others = (*moe_ints[1:], "moe_layer_freq", "router_aux_loss_coef")
            dense_bad = [n for n in others if getattr(self, n)]
            if dense_bad:
                raise ValueError(f"LLaDA config: {dense_bad} set but num_experts=0 (a dense model)")
            return
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"LLaDA config: num_experts_per_tok={self.num_experts_per_tok} must be in "
                f"[1, num_experts={self.num_experts}]"
            )
        if self.expert_intermediate_size <= 0:
            raise ValueError("LLaDA config: an MoE model (num_experts > 0) needs expert_intermediate_size")
        freq = self.moe_layer_freq
        if freq and (len(freq) != self.n_layers or any(f not in (0, 1) for f in freq)):
            raise ValueError(
                f"LLaDA config: moe_layer_freq must hold n_layers={self.n_layers} 0/1 entries, got {freq!r}"
            )

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def moe_blocks(self) -> tuple[bool, ...]:
        """Per block: True where the MLP is the routed-expert layer (all blocks when moe_layer_freq is ())."""
        if not self.is_moe:
            return (False,) * self.n_layers
        return tuple(bool(f) for f in self.moe_layer_freq) if self.moe_layer_freq else (True,) * self.n_layers

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def num_parameters(self) -> int:
        """Parameter count (untied embedding and head, no biases; every expert counted)."""
        hd = self.head_dim
        d = self.d_model
        attn = d * hd * (2 * self.n_heads + 2 * self.n_kv_heads) + (2 * hd if self.qk_layernorm else 0)
        dense_mlp = 3 * d * self.mlp_hidden_size
        moe_mlp = (
            self.num_experts * (3 * d * self.expert_intermediate_size + d)  # experts + router rows
            + 3 * d * self.shared_expert_intermediate_size
        )
        mlps = sum(moe_mlp if moe else dense_mlp for moe in self.moe_blocks())
        head = 0 if self.weight_tying else self.embedding_size * d
        return self.embedding_size * d + head + self.n_layers * (attn + 2 * d) + mlps + d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> LLaDAConfig:
        """Build from an HF config dict; validates ``model_type`` and required fields."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "llada")
        if model_type != "llada":
            raise ValueError(f"{source}: unknown architecture model_type={model_type!r}; expected 'llada'")
        known = {f.name for f in fields(cls)} - {"extra", "family"}
        required = ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "vocab_size")
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{source}: missing required LLaDA fields {missing}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("n_kv_heads", data.get("n_kv_heads") or data["n_heads"])
        if kwargs["n_kv_heads"] is None:
            kwargs["n_kv_heads"] = data["n_heads"]
        kwargs.setdefault("embedding_size", data.get("embedding_size") or data["vocab_size"])
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> LLaDAConfig:
        """Read ``config.json`` (or a folder holding one) of any registered architecture family."""
        from megatron_bgpo.checkpointing.mappings import load_config

        return load_config(path)

    def llada_dict(self) -> dict[str, Any]:
        """LLaDA's HF ``config.json`` content (extra fields first, typed fields override)."""
        data = dict(self.extra)
        data.update(
            {
                k: v
                for k, v in asdict(self).items()
                if k not in ("extra", "family") and k not in _dense_default(self)
            }
        )
        data["model_type"] = "llada"
        data.setdefault("architectures", ["LLaDAModelLM"])
        return data

    def to_dict(self) -> dict[str, Any]:
        """HF ``config.json`` content in the format of this config's family."""
        if self.family == "llada":
            return self.llada_dict()
        from megatron_bgpo.checkpointing.mappings import hf_config_of

        return hf_config_of(self)

    def to_json(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    def replace(self, **changes: Any) -> LLaDAConfig:
        return replace(self, **changes)


MOE_FIELDS = (
    "num_experts",
    "num_experts_per_tok",
    "expert_intermediate_size",
    "shared_expert_intermediate_size",
    "moe_layer_freq",
    "qk_layernorm",
    "router_aux_loss_coef",
)


def _dense_default(cfg: LLaDAConfig) -> tuple[str, ...]:
    """MoE fields left out of a dense model's config.json (so LLaDA exports stay as they were)."""
    return () if cfg.is_moe or cfg.qk_layernorm else MOE_FIELDS


# Tiny LLaDA-shaped model for CPU tests (a 256-id vocabulary; the tiny run sizes its own to its tokenizer).
_TINY = LLaDAConfig(
    d_model=64,
    n_layers=4,
    n_heads=4,
    n_kv_heads=4,
    mlp_hidden_size=128,
    vocab_size=256,
    embedding_size=256,
    max_sequence_length=256,
    mask_token_id=255,
    eos_token_id=254,
    pad_token_id=254,
)

PRESETS: dict[str, LLaDAConfig] = {
    # LLaDA-8B-Instruct / LLaDA-1.5 (spec §1.1).
    "llada-8b": LLaDAConfig(
        d_model=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        mlp_hidden_size=12288,
        vocab_size=126464,
        embedding_size=126464,
    ),
    "tiny": _TINY,
    "tiny-gqa": _TINY.replace(n_kv_heads=2),  # grouped-query attention (LLaDA-8B itself is MHA)
    # Tiny iLLaDA-shaped test model: GQA, tied embeddings, iLLaDA's low mask id 5 (other ids are the tiny
    # model's own). No full-size iLLaDA preset: its head count is not in any published file we found.
    "illada-tiny": _TINY.replace(family="illada", n_kv_heads=2, weight_tying=True, mask_token_id=5),
    # LLaDA-MoE-shaped (models/llada/moe.py): 4 experts, top-2, QK-norm, one dense block then MoE blocks;
    # a mask id of its own (LLaDA-MoE's is not LLaDA's either), so tests show the id is followed.
    "tiny-moe": _TINY.replace(
        n_layers=2,
        mask_token_id=250,
        num_experts=4,
        num_experts_per_tok=2,
        expert_intermediate_size=32,
        qk_layernorm=True,
    ),
}


def get_preset(name: str) -> LLaDAConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown LLaDA preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]
