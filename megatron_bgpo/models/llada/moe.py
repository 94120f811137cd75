"""LLaDA-MoE (inclusionAI LLaDA-MoE-7B-A1B): its facts, its HF config, and megatron-core's MoE settings.

Equations, from the published remote modeling code (``LLaDAMoEModelLM``; the copy stored as
ZHZisZZ/dllm-trainer ``dllm/pipelines/llada/models/modeling_lladamoe.py`` with its
``configuration_lladamoe.py``, ``model_type`` "lladamoe"):

- block (``LLaDAMoEDecoderLayer``): pre-norm; ``h += o_proj(attn(input_layernorm(h)))``, then
  ``h += mlp(x) [+ shared_expert(x)]`` with ``x = post_attention_layernorm(h)``; RMSNorm in fp32;
  bidirectional attention (``is_causal = False``), rotate-half RoPE on the full head dim, no biases
  (``attention_bias`` False by default);
- QK-norm (``qk_layernorm``): one RMSNorm of size head_dim applied to every head of q and of k
  (``q_norm(q.reshape(-1, head_dim))``), after the projections and *before* RoPE;
- dense or MoE per block: ``moe_layer_freq[i] == 0`` gives a dense SwiGLU MLP of
  ``dense_intermediate_size``, otherwise ``LLaDAMoESparseMoeBlock``;
- router (``LLaDAMoESparseMoeBlock``): ``gate`` = bias-free linear to ``num_experts`` logits;
  ``softmax`` over all experts in fp32 *first*, then top-``num_experts_per_tok`` of those
  probabilities; the selected probabilities are the weights, *not renormalised*
  (``norm_topk_prob = False`` is hard-coded, whatever the config says); experts are SwiGLU MLPs of
  ``expert_intermediate_size``; no capacity / token dropping (every token reaches its k experts);
- shared expert: a SwiGLU MLP of ``shared_expert_intermediate_size``, ungated, added to the routed
  output on MoE blocks when that size is not None;
- expert bias (``moe_router_enable_expert_bias``): the published code adds the bias to the softmax
  probabilities *and uses the biased values as weights*; megatron's expert bias only steers selection.
  The two differ, so a config enabling it is rejected here (`moe_fields_from_hf`);
- load-balancing loss (``load_balancing_loss_func``, Switch/Mixtral form): the router logits of all
  layers are concatenated into one [L * N, E] batch, ``f_e`` = mean over tokens of the top-k one-hot
  summed over the k slots, ``P_e`` = mean softmax probability, loss = ``E * sum_e f_e * P_e``,
  coefficient ``router_aux_loss_coef`` (config default 0.01). The published decoder layers never
  return their router logits, so through the published forward this loss is never computed; there is
  no published training code. How this repo treats it is in docs/moe.md (off for RL by default).

Megatron-core settings that reproduce the router (`moe_transformer_kwargs`): ``moe_router_pre_softmax``
(softmax over all experts before top-k, no renormalisation), score function ``softmax``, top-k scaling
none, no expert bias, dropless ``alltoall`` dispatcher, load balancing ``aux_loss`` with
``moe_aux_loss_coeff`` when the coefficient is > 0 (else ``none``). Megatron's per-layer aux loss is
``E / k * sum_e f_e P_e`` with ``f_e`` counted per (token, slot) (moe_utils.switch_load_balancing_loss_func):
the published per-token form divided by k, computed per layer and summed instead of over the
concatenated layers; `aux_loss_reference` in models/llada/moe_reference.py states both.

LLaDA-MoE-7B-A1B sizes. The model's own HF ``config.json`` is not in the stored sources; the values below
come from secondary sources and are therefore *not* hard-coded as a preset: import always reads the
checkpoint's config.json (`LLaDAConfig` from `moe_config_from_hf`).
- 16 layers, hidden 2048, 16 heads x 128 (no GQA), 64 experts of 1024, top-8, no shared expert, every
  layer MoE, QK-norm, softmax routing, no renormalisation (a third-party port's notes, read from a local
  snapshot of the config; inclusionAI/LLaDA-Research ``src/content/models/llada-moe-7b-a1b.mdx`` says
  "7B total, about 1.4B active");
- mask id 156895 (llama.cpp's ``convert_hf_to_gguf.py`` ``LLaDAMoEModel.set_gguf_parameters`` writes
  ``add_mask_token_id(156895)``; inclusionAI's dInfer examples use ``mask_id=156895, eos_id=156892``);
- NOT found: the exact vocab_size, rope_theta (one third-party README says 50000) and
  max_position_embeddings of the checkpoint: taken from its config.json at import.
"""

from __future__ import annotations

from typing import Any

import torch

from megatron_bgpo.models.llada.config import LLaDAConfig

LLADA_MOE_MASK_ID = 156895  # llama.cpp convert_hf_to_gguf.py (LLaDAMoEModel); inclusionAI/dInfer examples
LLADA_MOE_EOS_ID = 156892  # inclusionAI/dInfer examples (eos_id=156892)


def moe_transformer_kwargs(
    cfg: LLaDAConfig, expert_model_parallel_size: int = 1, tensor_model_parallel_size: int = 1
) -> dict[str, Any]:
    """TransformerConfig fields of LLaDA-MoE's MoE layers and QK-norm (empty for a dense LLaDA).

    The model itself is not sequence-parallel; at TP > 1 its MoE layers run sequence-parallel inside
    (models/llada/moe_sequence_parallel.py), so MoE trains at any TP / EP / PP / DP.
    ``tensor_model_parallel_size`` is accepted for symmetry with the builder and unused.
    """
    del tensor_model_parallel_size
    kwargs: dict[str, Any] = {}
    if cfg.qk_layernorm:
        kwargs["qk_layernorm"] = True
    if not cfg.is_moe:
        if expert_model_parallel_size != 1:
            raise ValueError(
                f"expert_model_parallel_size={expert_model_parallel_size} needs an MoE model (num_experts=0)"
            )
        return kwargs
    kwargs.update(
        num_moe_experts=cfg.num_experts,
        moe_router_topk=cfg.num_experts_per_tok,
        moe_ffn_hidden_size=cfg.expert_intermediate_size,
        moe_shared_expert_intermediate_size=cfg.shared_expert_intermediate_size or None,
        moe_shared_expert_gate=False,
        moe_router_pre_softmax=True,  # softmax over all experts, then top-k, weights not renormalised
        moe_router_score_function="softmax",
        moe_router_topk_scaling_factor=None,
        moe_router_enable_expert_bias=False,
        moe_router_load_balancing_type="aux_loss" if cfg.router_aux_loss_coef > 0 else "none",
        moe_aux_loss_coeff=cfg.router_aux_loss_coef,
        moe_token_dispatcher_type="alltoall",
        moe_expert_capacity_factor=None,  # dropless, as the published block
        moe_grouped_gemm=False,
        moe_permute_fusion=False,
        moe_router_fusion=False,
        expert_model_parallel_size=expert_model_parallel_size,
    )
    return kwargs


def sum_reduced_aux_loss(model: torch.nn.Module) -> int:
    """Make every router attach its aux loss as is (returns the number of routers changed).

    With ``calculate_per_token_loss`` megatron's router pre-multiplies the aux loss by its local token
    count, expecting finalize_model_grads to divide every gradient by the global token count. This repo
    finalizes gradients as sums with fixed weights (parallel/ddp.py: no per-token division), so that
    factor would stay; without it the schedule's per-micro-batch weight (parallel/schedule.py
    ``moe_aux_loss_weight``) is the aux loss's whole scaling (docs/moe.md)."""
    from megatron.core.transformer.moe.router import Router

    routers = [m for m in model.modules() if isinstance(m, Router)]
    for router in routers:
        router.calculate_per_token_loss = False
    return len(routers)


def validate_moe_layout(cfg: LLaDAConfig, tp: int, ep: int) -> None:
    """Raise ValueError when expert parallelism ``ep`` (and expert TP = ``tp``) cannot shard ``cfg``."""
    if not cfg.is_moe:
        return
    if cfg.num_experts % ep != 0:
        raise ValueError(f"expert_model_parallel_size={ep} does not divide num_experts={cfg.num_experts}")
    for value, what in (
        (cfg.expert_intermediate_size, "expert_intermediate_size"),
        (cfg.shared_expert_intermediate_size, "shared_expert_intermediate_size"),
    ):
        if value % tp != 0:
            raise ValueError(f"tensor_model_parallel_size={tp} does not divide {what}={value}")


_REQUIRED_HF = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "expert_intermediate_size",
    "num_experts",
    "num_experts_per_tok",
)


def moe_config_from_hf(data: dict[str, Any], source: str = "config") -> LLaDAConfig:
    """`LLaDAConfig` from an HF LLaDA-MoE ``config.json`` dict (``model_type`` "lladamoe"; the dllm
    docs also show "llada" on these checkpoints, accepted when MoE fields are present)."""
    model_type = data.get("model_type")
    if model_type not in ("lladamoe", "llada_moe", "llada") or "num_experts" not in data:
        raise ValueError(f"{source}: not an LLaDA-MoE config (model_type={model_type!r})")
    missing = [k for k in _REQUIRED_HF if data.get(k) in (None, -1)]
    if missing:
        raise ValueError(f"{source}: missing required LLaDA-MoE fields {missing}")
    if data.get("moe_router_enable_expert_bias"):
        raise ValueError(
            f"{source}: moe_router_enable_expert_bias=true is not supported (the published router uses the "
            "biased probabilities as weights; megatron's expert bias only steers selection)"
        )
    if data.get("moe_router_score_function") not in (None, "softmax"):
        raise ValueError(
            f"{source}: moe_router_score_function={data['moe_router_score_function']!r} "
            "is not supported (the published router is softmax)"
        )
    if data.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: hidden_act={data['hidden_act']!r} is not supported (silu)")
    for key in ("attention_bias", "clip_qkv", "rope_scaling"):
        if data.get(key):
            raise ValueError(f"{source}: {key}={data[key]!r} is not supported")
    if data.get("partial_rotary_factor", -1) not in (-1, 1, 1.0, None):
        raise ValueError(f"{source}: partial_rotary_factor={data['partial_rotary_factor']} is not supported")
    if data.get("rope_theta") in (None, -1):
        raise ValueError(f"{source}: rope_theta is missing")
    n_layers = data["num_hidden_layers"]
    freq = tuple(int(f) for f in (data.get("moe_layer_freq") or ()))
    dense = data.get("dense_intermediate_size", -1)
    if any(f == 0 for f in freq) and dense in (None, -1):
        raise ValueError(f"{source}: dense blocks in moe_layer_freq but no dense_intermediate_size")
    shared = data.get("shared_expert_intermediate_size")
    eos = data.get("eos_token_id", LLADA_MOE_EOS_ID)
    pad = data.get("pad_token_id", eos)
    known = set(_REQUIRED_HF) | {
        "model_type",
        "num_key_value_heads",
        "dense_intermediate_size",
        "shared_expert_intermediate_size",
        "rms_norm_eps",
        "rope_theta",
        "max_position_embeddings",
        "tie_word_embeddings",
        "moe_layer_freq",
        "qk_layernorm",
        "router_aux_loss_coef",
        "eos_token_id",
        "pad_token_id",
        "mask_token_id",
    }
    return LLaDAConfig(
        d_model=data["hidden_size"],
        n_layers=n_layers,
        n_heads=data["num_attention_heads"],
        n_kv_heads=data.get("num_key_value_heads") or data["num_attention_heads"],
        mlp_hidden_size=dense if dense not in (None, -1) else data["expert_intermediate_size"],
        vocab_size=data["vocab_size"],
        embedding_size=data["vocab_size"],
        rope_theta=float(data["rope_theta"]),
        rms_norm_eps=data.get("rms_norm_eps", 1e-5),
        max_sequence_length=data.get("max_position_embeddings", 4096),
        mask_token_id=data.get("mask_token_id", LLADA_MOE_MASK_ID),
        eos_token_id=eos,
        pad_token_id=pad if pad is not None else eos,
        weight_tying=bool(data.get("tie_word_embeddings", False)),
        num_experts=data["num_experts"],
        num_experts_per_tok=data["num_experts_per_tok"],
        expert_intermediate_size=data["expert_intermediate_size"],
        shared_expert_intermediate_size=shared if shared not in (None, -1) else 0,
        moe_layer_freq=freq if freq and not all(freq) else (),
        qk_layernorm=bool(data.get("qk_layernorm")),
        router_aux_loss_coef=0.0,  # off for RL by default (docs/moe.md); HF value kept in extra
        extra={k: v for k, v in data.items() if k not in known}
        | {"hf_router_aux_loss_coef": data.get("router_aux_loss_coef", 0.01)},
    )
