"""Independent plain-PyTorch LLaDA forward over HF-layout weights: the oracle for tests.

Written from the HF modeling code's description (spec §1.3), sharing nothing with the Megatron
path: separate q/k/v, ``ff_proj`` = gate, ``up_proj`` = up, ``ff_out`` = down per block, untied
``ff_out`` head (or the embedding when tied), GQA by repeating each KV head over its query group,
RMSNorm in fp32, rotate-half RoPE in fp32, full bidirectional SDPA.

iLLaDA's published modeling_illada.py (docs/models.md) computes the same equations (RMSNorm: fp32
normalise, cast, times weight; rotate-half RoPE with head_dim = hidden / heads; ``repeat_kv`` GQA;
``down(silu(gate) * up)``; no causal mask; ``lm_head`` tied to ``embed_tokens``) under HF-llama names:
`ILLADA_NAMES` renames them here, written from that file and independent of the converter's tables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megatron_bgpo.models.llada.config import LLaDAConfig

PREFIX = "model.transformer."

# iLLaDA HF name -> the LLaDA name (without PREFIX) of the same weight in the equations below.
ILLADA_NAMES = {
    "model.embed_tokens.weight": "wte.weight",
    "model.layers.{i}.input_layernorm.weight": "blocks.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blocks.{i}.q_proj.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blocks.{i}.k_proj.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blocks.{i}.v_proj.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blocks.{i}.attn_out.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blocks.{i}.ff_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blocks.{i}.ff_proj.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blocks.{i}.up_proj.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blocks.{i}.ff_out.weight",
    "model.norm.weight": "ln_f.weight",
    "lm_head.weight": "ff_out.weight",
}


def _llada_named(weights: dict[str, torch.Tensor], cfg: LLaDAConfig) -> dict[str, torch.Tensor]:
    """``weights`` keyed by LLaDA names without PREFIX (iLLaDA checkpoints renamed by ILLADA_NAMES)."""
    if cfg.family != "illada":
        return {k.removeprefix(PREFIX): v for k, v in weights.items()}
    table = _illada_table(cfg)
    return {table[k]: v for k, v in weights.items()}


def _illada_table(cfg: LLaDAConfig) -> dict[str, str]:
    """Every iLLaDA HF name of ``cfg`` -> its LLaDA name without PREFIX."""
    return {
        theirs.format(i=i): ours.format(i=i)
        for theirs, ours in ILLADA_NAMES.items()
        for i in range(cfg.n_layers)
    }


def hf_tensor_shapes(cfg: LLaDAConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of an HF LLaDA checkpoint with its shape ([out, in] for linears)."""
    d, f, hd = cfg.d_model, cfg.mlp_hidden_size, cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {f"{PREFIX}wte.weight": (cfg.embedding_size, d)}
    for i in range(cfg.n_layers):
        b = f"{PREFIX}blocks.{i}."
        shapes.update(
            {
                f"{b}attn_norm.weight": (d,),
                f"{b}q_proj.weight": (cfg.n_heads * hd, d),
                f"{b}k_proj.weight": (cfg.n_kv_heads * hd, d),
                f"{b}v_proj.weight": (cfg.n_kv_heads * hd, d),
                f"{b}attn_out.weight": (d, cfg.n_heads * hd),
                f"{b}ff_norm.weight": (d,),
                f"{b}ff_proj.weight": (f, d),
                f"{b}up_proj.weight": (f, d),
                f"{b}ff_out.weight": (d, f),
            }
        )
    shapes[f"{PREFIX}ln_f.weight"] = (d,)
    if not cfg.weight_tying:
        shapes[f"{PREFIX}ff_out.weight"] = (cfg.embedding_size, d)
    return shapes


def random_hf_weights(
    cfg: LLaDAConfig, seed: int = 0, dtype: torch.dtype = torch.float32, std: float = 0.05
) -> dict[str, torch.Tensor]:
    """Random HF-layout weights (norm weights around 1) for tests and synthetic checkpoints; named as
    ``cfg``'s family names them (iLLaDA: by ILLADA_NAMES; the values do not depend on the naming)."""
    norms = ("norm.weight", "ln_f.weight")
    weights = random_tensors(
        hf_tensor_shapes(cfg), seed, dtype, lambda name: None if name.endswith(norms) else std
    )
    if cfg.family == "illada":
        ours = {v: k for k, v in _illada_table(cfg).items()}
        return {ours[k.removeprefix(PREFIX)]: v for k, v in weights.items()}
    return weights


def random_tensors(
    shapes: dict[str, tuple[int, ...]], seed: int, dtype: torch.dtype, std_of
) -> dict[str, torch.Tensor]:
    """Seeded normal tensors in ``shapes`` order: std ``std_of(name)``, or 1 + 0.1 N(0, 1) where it is None
    (norm weights)."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in shapes.items():
        std = std_of(name)
        t = (
            1.0 + 0.1 * torch.randn(shape, generator=gen)
            if std is None
            else std * torch.randn(shape, generator=gen)
        )
        weights[name] = t.to(dtype)
    return weights


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rope(q: torch.Tensor, k: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: [B, heads, T, hd]; positions 0..T-1; computed in fp32 (fp64 if inputs are fp64)."""
    hd, t = q.shape[-1], q.shape[-2]
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=work) / hd))
    freqs = torch.outer(torch.arange(t, dtype=work), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    qf, kf = q.to(work), k.to(work)
    return (qf * cos + _rotate_half(qf) * sin).to(q.dtype), (kf * cos + _rotate_half(kf) * sin).to(k.dtype)


def reference_forward(
    weights: dict[str, torch.Tensor],
    cfg: LLaDAConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [B, T, embedding_size] for input_ids [B, T]; attention_mask [B, T] (True = real key)."""
    w = _llada_named(weights, cfg)
    bsz, seq = input_ids.shape
    nh, nkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    h = w["wte.weight"][input_ids]
    bias = None
    if attention_mask is not None:
        bias = torch.zeros(bsz, 1, 1, seq, dtype=h.dtype)
        bias = bias.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        a = _rms_norm(h, w[b + "attn_norm.weight"], cfg.rms_norm_eps)
        q = (a @ w[b + "q_proj.weight"].T).view(bsz, seq, nh, hd).transpose(1, 2)
        k = (a @ w[b + "k_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
        v = (a @ w[b + "v_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
        q, k = _rope(q, k, cfg.rope_theta)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        if bias is not None:
            scores = scores + bias
        o = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        o = o.transpose(1, 2).reshape(bsz, seq, nh * hd)
        h = h + o @ w[b + "attn_out.weight"].T
        m = _rms_norm(h, w[b + "ff_norm.weight"], cfg.rms_norm_eps)
        ff = F.silu(m @ w[b + "ff_proj.weight"].T) * (m @ w[b + "up_proj.weight"].T)
        h = h + ff @ w[b + "ff_out.weight"].T
    h = _rms_norm(h, w["ln_f.weight"], cfg.rms_norm_eps)
    head = w["wte.weight"] if cfg.weight_tying else w["ff_out.weight"]
    return h @ head.T
