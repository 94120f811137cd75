"""A tiny plain-torch bidirectional transformer honouring the denoiser contract (tests, benchmarks).

``ToyDenoiser(tokens [B, T], attention_mask [B, T] bool, position_ids [B, T]) -> [B, T, V] fp32``;
it also implements :class:`~megatron_bgpo.diffusion.sampler.PrefixCacheDenoiser` (prefill/extend, the
dual cache via ``suffix_start``, ``cache_rows``).
Not a model for training runs: learned absolute positions, LayerNorm, GELU MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ToyDenoiser"]

KV = tuple[Tensor, ...]  # one layer's (K, V) [B, heads, P, d] of the prefix, then (K, V) of the suffix if any


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: Tensor, key_mask: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        bsz, t, d = x.shape
        q, k, v = (
            z.view(bsz, t, self.n_heads, d // self.n_heads).transpose(1, 2)
            for z in self.qkv(self.ln1(x)).chunk(3, -1)
        )
        if past is not None:
            k, v = torch.cat([past[0], k, *past[2:3]], 2), torch.cat([past[1], v, *past[3:4]], 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        x = x + self.out(o.transpose(1, 2).reshape(bsz, t, d))
        return x + self.mlp(self.ln2(x)), (k, v)


class ToyDenoiser(nn.Module):
    """Bidirectional transformer: vocab_size ids (MASK included) -> fp32 logits over vocab_size."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 32,
        n_layers: int = 2,
        n_heads: int = 4,
        max_positions: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab_size, d_model)
            self.pos = nn.Embedding(max_positions, d_model)
            self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab_size, bias=False)

    accepts_logits_range = True  # see the sampler's denoiser contract

    def _run(
        self,
        tokens: Tensor,
        key_mask: Tensor,
        position_ids: Tensor,
        past: list[KV] | None,
        logits_range: tuple[int, int] | None,
        offset: int | None = None,
    ) -> tuple[Tensor, list[KV]]:
        x = self.embed(tokens) + self.pos(position_ids)
        kvs = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, key_mask.to(torch.bool), None if past is None else past[i])
            kvs.append(kv)
        if logits_range is not None:  # canvas positions; x covers the last x.shape[1] of them
            offset = key_mask.shape[1] - x.shape[1] if offset is None else offset
            x = x[:, logits_range[0] - offset : logits_range[1] - offset]
        return self.head(self.norm(x)).float(), kvs

    def forward(
        self,
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        logits_range: tuple[int, int] | None = None,
    ) -> Tensor:
        """[B, T] -> [B, T, V] (or [B, stop - start, V] for ``logits_range=(start, stop)``)."""
        return self._run(tokens, attention_mask, position_ids, None, logits_range)[0]

    def prefill(
        self,
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        prefix_length: int,
        logits_range: tuple[int, int] | None = None,
        suffix_start: int | None = None,
    ) -> tuple[Tensor, list[KV]]:
        """Full forward; the cache keeps every layer's K/V of positions < prefix_length (and >=
        suffix_start: the dual cache)."""
        logits, kvs = self._run(tokens, attention_mask, position_ids, None, logits_range)
        p, s = prefix_length, suffix_start
        if s is None:
            return logits, [(k[:, :, :p], v[:, :, :p]) for k, v in kvs]
        return logits, [(k[:, :, :p], v[:, :, :p], k[:, :, s:], v[:, :, s:]) for k, v in kvs]

    def cache_rows(self, cache: list[KV], index: Tensor) -> list[KV]:
        """Rows ``index`` of a cache (the sampler's row compaction)."""
        return [tuple(t[index] for t in kv) for kv in cache]

    def extend(
        self,
        cache: list[KV],
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        logits_range: tuple[int, int] | None = None,
    ) -> Tensor:
        """Suffix-only forward ([B, T - prefix] tokens, full [B, T] key mask) over the cached prefix; with
        a dual cache the tokens are the block between the cached prefix and suffix."""
        offset = cache[0][0].shape[2] if cache else None
        return self._run(tokens, attention_mask, position_ids, cache, logits_range, offset)[0]
