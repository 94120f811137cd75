"""Ranged logits and the block-wise approximate prefix KV cache (Fast-dLLM) for one LLaDA stage.

:func:`run_stage` runs one pipeline stage of the model (a megatron `LanguageModule`: the HybridModel
build, or a GPTModel) through megatron's own modules (``embedding``, the ``decoder`` stack with its
layers and final norm, ``output_layer``), with the output layer on a range of positions only.
:func:`stage_forward` does the same with each attention layer's ``self_attention.core_attention``
swapped, for the duration of the call, for :class:`_CacheAttention`:

- prefill (``AttentionCache.capture``): records the post-RoPE K/V of the first ``capture`` canvas
  positions, then runs the layer's original attention kernel, so a prefill equals the normal forward;
- extend (``AttentionCache.past``): the queries are the suffix only and attend (bidirectionally, with
  the [B, T] key-padding mask of the whole canvas) to the cached prefix K/V followed by the suffix's
  own K/V, computed with torch SDPA on this rank's heads (GQA groups expanded like megatron does).
- dual cache (Fast-dLLM): the prefill also records the K/V of the positions >= ``capture_suffix``
  (``AttentionCache.captured_suffix``); an extend with ``past_suffix`` runs only the block between the
  two and attends to [cached prefix, block, cached suffix].

RoPE uses canvas indices as positions, like :func:`~megatron_bgpo.models.llada.model.llada_forward`
(0..T-1; left padding is handled by the key mask): a suffix that starts at canvas position P gets
``rotary_pos_emb(S, offset=P)``, so the cached prefix keys and the suffix keep their distances.

Layer specs: ``TransformerLayer.forward`` and ``Attention.forward`` run unchanged, so the Transformer
Engine spec's fused norm + linear (``input_layernorm``/``pre_mlp_layernorm`` are ``IdentityOp``, the
RMSNorm lives in ``linear_qkv``/``linear_fc1``) and tensor parallelism are megatron's; the swapped kernel
sees q [sq, b, heads/TP, d] and k, v [sk, b, groups/TP, d] under both specs. Tested on CPU (gloo) with
the local spec only; the TE path is covered by a GPU test that was not run here.

Not supported (raises): sequence parallel, context parallel, MTP, multi-latent attention, MuP logit
scaling (the cached path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.models.common.language_module.language_module import LanguageModule
from megatron.core.transformer.attention import Attention
from torch import Tensor, nn

__all__ = [
    "KV",
    "AttentionCache",
    "check_range",
    "check_supported",
    "project_logits",
    "run_stage",
    "stage_forward",
    "unwrap_model",
]

KV = tuple[Tensor, Tensor]  # one layer's (K, V), each [P, b, groups/TP, head_dim] (sbhd), after RoPE


def unwrap_model(module: nn.Module) -> LanguageModule:
    """The language model inside wrappers (megatron DDP, Float16Module) that keep it in ``.module``."""
    m = module
    while not isinstance(m, LanguageModule):
        inner = getattr(m, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(
                f"expected a megatron language model (possibly wrapped), got {type(module).__name__}"
            )
        m = inner
    return m


def check_supported(gpt: LanguageModule, cached: bool) -> None:
    """Raise NotImplementedError for model features the ranged / cached forward does not handle."""
    c = gpt.config
    bad = {
        "sequence_parallel": c.sequence_parallel,
        "context_parallel_size > 1": c.context_parallel_size > 1,
        "mtp_num_layers": bool(c.mtp_num_layers),
        "multi_latent_attention": c.multi_latent_attention,
        "use_mup": c.use_mup,
    }
    names = [k for k, v in bad.items() if v]
    if names:
        what = "the prefix KV cache" if cached else "logits_range"
        raise NotImplementedError(f"{what} does not support {', '.join(names)}")


def check_range(logits_range: tuple[int, int], lo: int, hi: int) -> None:
    """``logits_range`` must be a non-empty canvas span inside [lo, hi)."""
    start, stop = logits_range
    if not lo <= start < stop <= hi:
        raise ValueError(
            f"logits_range={logits_range} is not a non-empty span of canvas positions [{lo}, {hi})"
        )


def project_logits(gpt: LanguageModule, hidden: Tensor, start: int, stop: int) -> Tensor:
    """Final-normed hidden [S, B, H], rows start:stop -> vocab-parallel logits [B, stop - start, V/TP]."""
    weight = gpt.shared_embedding_or_output_weight() if gpt.share_embeddings_and_output_weights else None
    logits, _ = gpt.output_layer(hidden[start:stop], weight=weight)
    return logits.transpose(0, 1).contiguous()


@dataclass
class AttentionCache:
    """Per-call state shared by one stage's swapped attention kernels.

    key_mask: [b, T] bool (True = real token) over the whole canvas. Prefill: ``capture`` = number of
    leading positions whose K/V are kept in ``captured`` (one entry per local layer), and with
    ``capture_suffix`` = S those of positions >= S in ``captured_suffix``. Extend: ``past`` = this
    stage's cached prefix K/V per local layer, ``past_suffix`` the cached suffix's (dual cache).
    """

    key_mask: Tensor
    capture: int | None = None
    capture_suffix: int | None = None
    past: list[KV] | None = None
    past_suffix: list[KV] | None = None
    captured: list[KV | None] = field(default_factory=list)
    captured_suffix: list[KV | None] = field(default_factory=list)

    @property
    def suffix_length(self) -> int:
        """Cached suffix positions an extend attends to after its own tokens (0 without a dual cache)."""
        return 0 if not self.past_suffix else int(self.past_suffix[0][0].shape[0])


def _sdpa(query: Tensor, key: Tensor, value: Tensor, key_mask: Tensor, scale: float) -> Tensor:
    """q [sq, b, np, d], k/v [sk, b, ng, d], key_mask [b, sk] (True = attend) -> [sq, b, np * d]."""
    sq, b, heads, _ = query.shape
    rep = heads // key.shape[2]
    q = query.permute(1, 2, 0, 3)
    k = key.permute(1, 2, 0, 3).repeat_interleave(rep, dim=1)  # megatron's GQA head grouping
    v = value.permute(1, 2, 0, 3).repeat_interleave(rep, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :], scale=scale)
    return out.permute(2, 0, 1, 3).reshape(sq, b, -1)


class _CacheAttention(nn.Module):
    """Stands in for one layer's ``core_attention`` (same call signature) during a cached call."""

    def __init__(self, inner: nn.Module, state: AttentionCache, index: int, scale: float) -> None:
        super().__init__()
        self.inner, self.state, self.index, self.scale = inner, state, index, scale

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, **kw: Any
    ) -> Tensor:
        s = self.state
        if s.past is None:  # prefill: keep the prefix K/V, run the layer's own kernel
            p = s.capture or 0
            s.captured[self.index] = (key[:p].clone(), value[:p].clone())
            if s.capture_suffix is not None:
                q = s.capture_suffix
                s.captured_suffix[self.index] = (key[q:].clone(), value[q:].clone())
            return self.inner(query, key, value, attention_mask, **kw)
        past_k, past_v = s.past[self.index]
        if s.past_suffix is None:
            key, value = torch.cat([past_k, key]), torch.cat([past_v, value])
        else:
            suf_k, suf_v = s.past_suffix[self.index]
            key, value = torch.cat([past_k, key, suf_k]), torch.cat([past_v, value, suf_v])
        return _sdpa(query, key, value, s.key_mask, self.scale)


@contextmanager
def _cached_attention(gpt: LanguageModule, state: AttentionCache) -> Iterator[None]:
    """Swap every local attention layer's core attention for a :class:`_CacheAttention` bound to ``state``
    (the MLP sublayers of a hybrid stack have no attention)."""
    layers = gpt.decoder.layers
    attns = [layer.self_attention for layer in layers if isinstance(layer.self_attention, Attention)]
    inners = [a.core_attention for a in attns]
    c = gpt.config
    scale = c.softmax_scale if c.softmax_scale is not None else c.kv_channels**-0.5
    state.captured = [None] * len(attns)
    state.captured_suffix = [None] * len(attns)
    try:
        for i, (a, inner) in enumerate(zip(attns, inners, strict=True)):
            a.core_attention = _CacheAttention(inner, state, i, scale)
        yield
    finally:
        for a, inner in zip(attns, inners, strict=True):
            a.core_attention = inner


def run_stage(
    gpt: LanguageModule,
    tokens: Tensor,
    key_mask: Tensor,
    offset: int = 0,
    logits_range: tuple[int, int] | None = None,
    project: bool = True,
) -> Tensor:
    """Run this stage on ``tokens`` [B, S] at canvas positions offset..offset+S-1, attending to the keys
    that ``key_mask`` [B, offset + S] marks real (True = real token). Without a cache ``offset`` is 0; in a
    cached extend (:func:`stage_forward`) the first ``offset`` keys are the cached prefix's.

    Non-first stages take their input from ``gpt.decoder.input_tensor`` (set by the pipeline
    schedule). Returns hidden states [S, B, H] on non-last stages, else vocab-parallel logits
    [B, S, V/TP] or [B, stop - start, V/TP] for ``logits_range=(start, stop)`` (canvas positions);
    ``project=False``: the last stage's final-normed hidden states [S, B, H] instead of logits.
    """
    seq = tokens.shape[1]
    hidden = None
    if gpt.pre_process:
        positions = torch.arange(offset, offset + seq, device=tokens.device).expand_as(tokens)
        hidden = gpt.embedding(input_ids=tokens, position_ids=positions)
    rotary = gpt.rotary_pos_emb(seq, offset=offset)
    mask = ~key_mask[:, None, None, :]  # megatron's convention: True = masked-out key
    hidden = gpt.decoder(hidden_states=hidden, attention_mask=mask, rotary_pos_emb=rotary)
    if not gpt.post_process or not project:
        return hidden
    start, stop = logits_range or (offset, offset + seq)
    check_range((start, stop), offset, offset + seq)
    return project_logits(gpt, hidden, start - offset, stop - offset)


def stage_forward(
    gpt: LanguageModule,
    tokens: Tensor,
    state: AttentionCache,
    offset: int,
    logits_range: tuple[int, int] | None = None,
) -> Tensor:
    """:func:`run_stage` with the cache of ``state`` (a prefill when ``state.past`` is None, else an
    extend of the suffix at ``offset`` against the cached prefix, or with ``state.past_suffix`` of the
    block between the cached prefix and suffix). Same shapes as :func:`run_stage`."""
    check_supported(gpt, cached=True)
    seq = tokens.shape[1]
    if offset + seq + state.suffix_length != state.key_mask.shape[1]:
        raise ValueError(
            f"{seq} tokens at offset {offset} + {state.suffix_length} cached suffix positions != key mask "
            f"width {state.key_mask.shape[1]}"
        )
    with _cached_attention(gpt, state):
        return run_stage(gpt, tokens, state.key_mask, offset, logits_range)
