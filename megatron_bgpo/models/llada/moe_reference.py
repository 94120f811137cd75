"""Independent plain-PyTorch LLaDA-MoE forward over HF-layout weights: the oracle for MoE tests.

Written from the published modeling code's equations (models/llada/moe.py lists them with the source),
sharing nothing with the Megatron path: per-head QK RMSNorm before rotate-half RoPE, full bidirectional
attention, softmax-then-top-k routing with unnormalised weights, a dense loop over experts, the
ungated shared expert added on MoE blocks, untied ``lm_head``. HF tensor names are those of
``LLaDAMoEModelLM`` (``model.layers.{i}.self_attn.q_proj``, ``mlp.gate``, ``mlp.experts.{e}.gate_proj``,
``shared_expert.*`` on the decoder layer, ``model.norm``, ``lm_head``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.reference import _rms_norm, _rope, random_tensors


def _swiglu_shapes(prefix: str, d: int, f: int) -> dict[str, tuple[int, int]]:
    return {
        f"{prefix}gate_proj.weight": (f, d),
        f"{prefix}up_proj.weight": (f, d),
        f"{prefix}down_proj.weight": (d, f),
    }


def hf_moe_tensor_shapes(cfg: LLaDAConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of an HF LLaDA-MoE checkpoint with its shape ([out, in] for linears)."""
    d, hd = cfg.d_model, cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.embedding_size, d)}
    for i, moe in enumerate(cfg.moe_blocks()):
        b = f"model.layers.{i}."
        shapes.update(
            {
                f"{b}input_layernorm.weight": (d,),
                f"{b}self_attn.q_proj.weight": (cfg.n_heads * hd, d),
                f"{b}self_attn.k_proj.weight": (cfg.n_kv_heads * hd, d),
                f"{b}self_attn.v_proj.weight": (cfg.n_kv_heads * hd, d),
                f"{b}self_attn.o_proj.weight": (d, cfg.n_heads * hd),
                f"{b}post_attention_layernorm.weight": (d,),
            }
        )
        if cfg.qk_layernorm:
            shapes[f"{b}self_attn.q_norm.weight"] = (hd,)
            shapes[f"{b}self_attn.k_norm.weight"] = (hd,)
        if not moe:
            shapes.update(_swiglu_shapes(f"{b}mlp.", d, cfg.mlp_hidden_size))
            continue
        shapes[f"{b}mlp.gate.weight"] = (cfg.num_experts, d)
        for e in range(cfg.num_experts):
            shapes.update(_swiglu_shapes(f"{b}mlp.experts.{e}.", d, cfg.expert_intermediate_size))
        if cfg.shared_expert_intermediate_size:
            shapes.update(_swiglu_shapes(f"{b}shared_expert.", d, cfg.shared_expert_intermediate_size))
    shapes["model.norm.weight"] = (d,)
    if not cfg.weight_tying:
        shapes["lm_head.weight"] = (cfg.embedding_size, d)
    return shapes


def random_hf_moe_weights(
    cfg: LLaDAConfig, seed: int = 0, dtype: torch.dtype = torch.float32, std: float = 0.05
) -> dict[str, torch.Tensor]:
    """Random HF-layout weights (norm weights around 1; router rows larger so routing is decisive)."""

    def std_of(name: str) -> float | None:
        return None if name.endswith("norm.weight") else 0.3 if name.endswith("mlp.gate.weight") else std

    return random_tensors(hf_moe_tensor_shapes(cfg), seed, dtype, std_of)


def _swiglu(x: torch.Tensor, w: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return (F.silu(x @ w[prefix + "gate_proj.weight"].T) * (x @ w[prefix + "up_proj.weight"].T)) @ w[
        prefix + "down_proj.weight"
    ].T


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Published routing: softmax over all experts (fp32), top-k; weights not renormalised.
    logits [N, E] -> (weights [N, k], experts [N, k])."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return weights.to(logits.dtype), experts


def _moe(
    x: torch.Tensor, w: dict[str, torch.Tensor], b: str, cfg: LLaDAConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [N, d] -> (routed output [N, d], router logits [N, E])."""
    logits = x @ w[b + "mlp.gate.weight"].T
    weights, experts = route(logits, cfg.num_experts_per_tok)
    out = torch.zeros_like(x)
    for e in range(cfg.num_experts):
        rows, slot = torch.where(experts == e)
        if rows.numel():
            y = _swiglu(x[rows], w, f"{b}mlp.experts.{e}.") * weights[rows, slot, None]
            out = out.index_add(0, rows, y)
    return out, logits


def moe_reference_forward(
    weights: dict[str, torch.Tensor],
    cfg: LLaDAConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits [B, T, V], router logits [B*T, E] per MoE block) for input_ids [B, T];
    attention_mask [B, T] (True = real key)."""
    w = weights
    bsz, seq = input_ids.shape
    nh, nkv, hd, eps = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rms_norm_eps
    h = w["model.embed_tokens.weight"][input_ids]
    bias = None
    if attention_mask is not None:
        bias = torch.zeros(bsz, 1, 1, seq, dtype=h.dtype)
        bias = bias.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
    router_logits = []
    for i, moe in enumerate(cfg.moe_blocks()):
        b = f"model.layers.{i}."
        a = _rms_norm(h, w[b + "input_layernorm.weight"], eps)
        q = (a @ w[b + "self_attn.q_proj.weight"].T).view(bsz, seq, nh, hd)
        k = (a @ w[b + "self_attn.k_proj.weight"].T).view(bsz, seq, nkv, hd)
        v = (a @ w[b + "self_attn.v_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
        if cfg.qk_layernorm:  # one norm of size head_dim over every head, before RoPE
            q = _rms_norm(q, w[b + "self_attn.q_norm.weight"], eps)
            k = _rms_norm(k, w[b + "self_attn.k_norm.weight"], eps)
        q, k = _rope(q.transpose(1, 2), k.transpose(1, 2), cfg.rope_theta)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        if bias is not None:
            scores = scores + bias
        o = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        h = h + o.transpose(1, 2).reshape(bsz, seq, nh * hd) @ w[b + "self_attn.o_proj.weight"].T
        x = _rms_norm(h, w[b + "post_attention_layernorm.weight"], eps).reshape(bsz * seq, -1)
        if moe:
            y, logits = _moe(x, w, b, cfg)
            router_logits.append(logits)
            if cfg.shared_expert_intermediate_size:
                y = y + _swiglu(x, w, b + "shared_expert.")
        else:
            y = _swiglu(x, w, b + "mlp.")
        h = h + y.view(bsz, seq, -1)
    h = _rms_norm(h, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.weight_tying else w["lm_head.weight"]
    return h @ head.T, router_logits


def published_aux_loss(router_logits: list[torch.Tensor], num_experts: int, top_k: int) -> torch.Tensor:
    """The published ``load_balancing_loss_func`` (no attention mask): all layers' logits concatenated,
    ``E * sum_e f_e P_e`` with ``f_e`` = mean over tokens of the top-k one-hot (summed over slots)."""
    logits = torch.cat(router_logits, dim=0)
    probs = torch.softmax(logits.float(), dim=-1)
    chosen = F.one_hot(torch.topk(probs, top_k, dim=-1).indices, num_experts).float()  # [N, k, E]
    return num_experts * (chosen.mean(0) * probs.mean(0)).sum()


def megatron_aux_loss(router_logits: list[torch.Tensor], num_experts: int, top_k: int) -> torch.Tensor:
    """Megatron's per-layer switch loss summed over layers (uncoefficiented), written out by hand:
    per layer ``E / (k T^2) * sum_e count_e * sum_t p_te``; with one layer it is published / k."""
    total = torch.zeros((), dtype=torch.float64)
    for logits in router_logits:
        probs = torch.softmax(logits.double(), dim=-1)
        t = logits.shape[0]
        counts = F.one_hot(torch.topk(probs, top_k, dim=-1).indices, num_experts).sum((0, 1)).double()
        total = total + num_experts / (top_k * t * t) * (counts * probs.sum(0)).sum()
    return total
