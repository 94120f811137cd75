"""Declarative HF <-> Megatron mapping for LLaDA-MoE (``LLaDAMoEModelLM``, model_type "lladamoe").

One entry per Megatron tensor of the HybridModel build (models/llada/layer_spec.py
`llada_moe_stack_spec`), named inside its sublayer: ``attention`` (``*``), ``mlp`` (``-``, dense blocks
of ``moe_layer_freq``) or ``moe`` (``E``). HF names are those of the published modeling code
(models/llada/moe.py cites it); ``{layer}`` is the block, ``{expert}`` the global expert index.
Split kinds are those of checkpointing/llada_mapping.py (replicated / vocab / row / qkv / glu), plus
expert parallelism: expert ``e`` lives on EP rank ``e // (E / EP)`` as local expert ``e % (E / EP)``,
and inside it splits over the expert-TP ranks like a dense MLP of ``expert_intermediate_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from megatron_bgpo.checkpointing.llada_mapping import (
    Reader,
    TensorMapping,
    model_layer_map,
    read_local,
    to_hf,
)
from megatron_bgpo.models.llada.config import LLaDAConfig

ATTN, MLP, MOE = "attention", "mlp", "moe"


@dataclass(frozen=True)
class MoETensorMapping:
    """One Megatron tensor. ``width``: the intermediate size its glu/row split runs over (None: the
    dense attention/MLP sizes); ``per_expert``: one tensor per routed expert."""

    megatron: str
    hf: tuple[str, ...]
    split: str
    sublayer: str | None = None
    te_megatron: str | None = None
    width: str | None = None
    per_expert: bool = False

    def hf_names(self, layer: int | None = None, expert: int | None = None) -> tuple[str, ...]:
        return tuple(n.format(layer=layer, expert=expert) for n in self.hf)

    def name_in_sublayer(self, local_expert: int | None = None, use_te: bool = False) -> str:
        name = self.te_megatron if (use_te and self.te_megatron) else self.megatron
        return name.format(expert=local_expert)


def _swiglu(
    megatron: str, hf_prefix: str, sublayer: str, width: str | None, **kw
) -> tuple[MoETensorMapping, ...]:
    fc1, fc2 = (megatron + "linear_fc1.weight", megatron + "linear_fc2.weight")
    te = kw.pop("te", None)
    return (
        MoETensorMapping(
            fc1,
            (hf_prefix + "gate_proj.weight", hf_prefix + "up_proj.weight"),
            "glu",
            sublayer,
            te_megatron=te and te + "linear_fc1.weight{expert}",
            width=width,
            **kw,
        ),
        MoETensorMapping(
            fc2,
            (hf_prefix + "down_proj.weight",),
            "row",
            sublayer,
            te_megatron=te and te + "linear_fc2.weight{expert}",
            width=width,
            **kw,
        ),
    )


L = "model.layers.{layer}."
MAPPINGS: tuple[MoETensorMapping, ...] = (
    MoETensorMapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), "vocab"),
    MoETensorMapping(
        "input_layernorm.weight",
        (L + "input_layernorm.weight",),
        "replicated",
        ATTN,
        te_megatron="self_attention.linear_qkv.layer_norm_weight",
    ),
    MoETensorMapping(
        "self_attention.linear_qkv.weight",
        (L + "self_attn.q_proj.weight", L + "self_attn.k_proj.weight", L + "self_attn.v_proj.weight"),
        "qkv",
        ATTN,
    ),
    MoETensorMapping(
        "self_attention.q_layernorm.weight", (L + "self_attn.q_norm.weight",), "replicated", ATTN
    ),
    MoETensorMapping(
        "self_attention.k_layernorm.weight", (L + "self_attn.k_norm.weight",), "replicated", ATTN
    ),
    MoETensorMapping("self_attention.linear_proj.weight", (L + "self_attn.o_proj.weight",), "row", ATTN),
    # dense blocks
    MoETensorMapping(
        "pre_mlp_layernorm.weight",
        (L + "post_attention_layernorm.weight",),
        "replicated",
        MLP,
        te_megatron="mlp.linear_fc1.layer_norm_weight",
    ),
    *_swiglu("mlp.", L + "mlp.", MLP, None),
    # MoE blocks (the norm is a separate module with TE too)
    MoETensorMapping("pre_mlp_layernorm.weight", (L + "post_attention_layernorm.weight",), "replicated", MOE),
    MoETensorMapping("mlp.router.weight", (L + "mlp.gate.weight",), "replicated", MOE),
    *_swiglu(
        "mlp.experts.local_experts.{expert}.",
        L + "mlp.experts.{expert}.",
        MOE,
        "expert_intermediate_size",
        per_expert=True,
        te="mlp.experts.",
    ),
    *_swiglu("mlp.shared_experts.", L + "shared_expert.", MOE, "shared_expert_intermediate_size"),
    MoETensorMapping("decoder.final_norm.weight", ("model.norm.weight",), "replicated"),
    MoETensorMapping("output_layer.weight", ("lm_head.weight",), "vocab"),
)


def _as_dense(
    m: MoETensorMapping, cfg: LLaDAConfig, names: tuple[str, ...]
) -> tuple[TensorMapping, LLaDAConfig]:
    """The llada_mapping entry (concrete names) and config whose dense split rules read ``m``."""
    dense_cfg = cfg.replace(mlp_hidden_size=getattr(cfg, m.width)) if m.width else cfg
    return TensorMapping(m.megatron, names, m.split), dense_cfg


def read_moe_local(
    m: MoETensorMapping,
    cfg: LLaDAConfig,
    layer: int | None,
    read: Reader,
    tp_rank: int = 0,
    tp_size: int = 1,
    expert: int | None = None,
) -> torch.Tensor:
    """The Megatron tensor of ``m`` (global ``expert`` for per-expert entries) held by TP rank ``tp_rank``."""
    dense, dense_cfg = _as_dense(m, cfg, m.hf_names(layer, expert))
    return read_local(dense, dense_cfg, None, read, tp_rank, tp_size)


def moe_to_hf(
    m: MoETensorMapping, cfg: LLaDAConfig, layer: int | None, logical: torch.Tensor, expert: int | None = None
) -> dict[str, torch.Tensor]:
    """HF tensors from the TP=1 Megatron tensor of ``m``."""
    dense, dense_cfg = _as_dense(m, cfg, m.hf_names(layer, expert))
    return to_hf(dense, dense_cfg, None, logical)


def _applies(m: MoETensorMapping, cfg: LLaDAConfig) -> bool:
    if "layernorm.weight" in m.megatron and "_layernorm" in m.megatron:  # q/k norm
        return cfg.qk_layernorm
    if m.megatron.startswith("mlp.shared_experts."):
        return cfg.shared_expert_intermediate_size > 0
    if m.megatron == "output_layer.weight":
        return not cfg.weight_tying
    return True


def iter_moe_stage_tensors(
    model: torch.nn.Module, cfg: LLaDAConfig, ep_rank: int = 0, ep_size: int = 1
) -> Iterator[tuple[str, MoETensorMapping, int | None, int | None]]:
    """(local Megatron name, mapping, global block, global expert) for every tensor this stage holds."""
    if cfg.num_experts % ep_size != 0:
        raise ValueError(
            f"expert_model_parallel_size={ep_size} does not divide num_experts={cfg.num_experts}"
        )
    params = dict(model.named_parameters())
    layers = model_layer_map(model)
    moe_blocks = cfg.moe_blocks()
    local_experts = cfg.num_experts // ep_size
    for m in MAPPINGS:
        if not _applies(m, cfg):
            continue
        if m.sublayer is None:
            if m.megatron in params:
                yield m.megatron, m, None, None
            continue
        for local, (block, sublayer) in layers.items():
            kind = ATTN if sublayer == ATTN else (MOE if moe_blocks[block] else MLP)
            if kind != m.sublayer:
                continue
            for j in range(local_experts) if m.per_expert else (None,):
                expert = None if j is None else ep_rank * local_experts + j
                for use_te in (False, True):
                    name = f"decoder.layers.{local}.{m.name_in_sublayer(j, use_te)}"
                    if name in params:
                        yield name, m, block, expert
                        break


@torch.no_grad()
def load_hf_moe_into_model(
    model: torch.nn.Module,
    cfg: LLaDAConfig,
    read: Reader,
    tp_rank: int = 0,
    tp_size: int = 1,
    ep_rank: int = 0,
    ep_size: int = 1,
) -> int:
    """Copy HF LLaDA-MoE weights into one stage of the Megatron model; returns the number of tensors set.
    Expert tensors split over the expert-TP ranks, taken here as the TP ranks (megatron's default
    expert_tensor_parallel_size = tensor_model_parallel_size). Raises on uncovered parameters or shapes."""
    params = dict(model.named_parameters())
    done: set[str] = set()
    for name, m, layer, expert in iter_moe_stage_tensors(model, cfg, ep_rank, ep_size):
        try:
            local = read_moe_local(m, cfg, layer, read, tp_rank, tp_size, expert)
        except (RuntimeError, IndexError) as exc:  # a slice or concat of wrongly shaped HF tensors
            raise ValueError(f"shape mismatch for {name} (HF {m.hf_names(layer, expert)}): {exc}") from exc
        target = params[name]
        if tuple(local.shape) != tuple(target.shape):
            raise ValueError(
                f"shape mismatch for {name} (HF {m.hf_names(layer, expert)}): HF gives {tuple(local.shape)}, "
                f"model expects {tuple(target.shape)} (tp {tp_rank}/{tp_size}, ep {ep_rank}/{ep_size})"
            )
        target.copy_(local.to(target.dtype))
        done.add(name)
    missing = sorted(set(params) - done)
    if missing:
        raise ValueError(f"model parameters not covered by the LLaDA-MoE mapping: {missing[:8]}")
    return len(done)


@torch.no_grad()
def export_stage_hf(
    model: torch.nn.Module, cfg: LLaDAConfig, ep_rank: int = 0, ep_size: int = 1
) -> dict[str, torch.Tensor]:
    """HF tensors of the parameters one TP=1 stage holds (its EP rank's experts): the stage's share of
    an export; the union over stages and EP ranks is the whole checkpoint."""
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, m, layer, expert in iter_moe_stage_tensors(model, cfg, ep_rank, ep_size):
        out.update(moe_to_hf(m, cfg, layer, params[name].detach().cpu(), expert))
    return out
