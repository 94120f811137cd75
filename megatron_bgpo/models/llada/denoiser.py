"""The LLaDA Megatron model as a sampler denoiser (diffusion/sampler.py contract).

Each call runs one forward-only pass through the pipeline schedule (every stage computes its part;
the last stage holds the vocab-parallel logits) and returns this rank's logits shard
[B, T, V/TP] on the last pipeline stage, None elsewhere. `vocab_shard` and `pipeline_comm` describe
the same layout for the sampler's distributed argmax and token broadcast.

The optional sampler hooks are implemented: ``logits_range`` (the output layer runs only on the
block the sampler reads), ``prefill``/``extend`` (the block-wise approximate prefix KV cache and, with
``suffix_start``, Fast-dLLM's dual cache, :mod:`megatron_bgpo.models.llada.prefix_cache`) and
``cache_rows`` (row compaction). The cached calls go through the same pipeline
schedule, so hidden states pass between stages by megatron's p2p communication and ``max_rows``
micro-batching applies; the cache is kept per (model chunk, micro-batch) on each rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from megatron_bgpo.diffusion.sampler import PipelineComm
from megatron_bgpo.diffusion.vocab import VocabShard
from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.model import llada_forward
from megatron_bgpo.models.llada.prefix_cache import KV, AttentionCache, stage_forward, unwrap_model
from megatron_bgpo.parallel.groups import ParallelGroups, current_groups
from megatron_bgpo.parallel.schedule import run_microbatches

Batch = tuple[int, Tensor, Tensor]  # (micro-batch index, tokens [b, S], key-padding mask [b, T])
StageFn = Callable[[Batch, torch.nn.Module], Tensor]


@dataclass
class PrefixKV:
    """A prefill's cache on this rank: ``kv[(chunk, micro-batch)]`` = that model chunk's per-layer K/V
    [prefix_length, b, kv_heads/TP, head_dim] (after RoPE) for the micro-batch's rows; with a dual cache
    ``suffix_kv`` likewise for canvas positions >= ``suffix_start`` ([T - suffix_start, b, ...])."""

    prefix_length: int
    rows: int
    kv: dict[tuple[int, int], list[KV]]
    suffix_start: int | None = None
    suffix_kv: dict[tuple[int, int], list[KV]] | None = None


def _collect(logits: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Loss-function slot of the schedule: pass the last stage's logits through."""
    return torch.zeros(()), torch.ones((), dtype=torch.int), {"logits": logits}


@contextmanager
def _eval_mode(chunks: Sequence[torch.nn.Module]) -> Iterator[None]:
    modes = [m.training for m in chunks]
    for m in chunks:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(chunks, modes, strict=True):
            m.train(mode)


class MegatronDenoiser:
    """Callable ``(tokens [B,T], attention_mask [B,T], position_ids [B,T]) -> logits shard | None``.

    ``position_ids`` are accepted for the contract but unused: RoPE positions are canvas indices
    (see :func:`llada_forward`), which is the same up to the relative shift RoPE ignores.
    """

    accepts_logits_range = True  # see the sampler's denoiser contract

    def __init__(
        self,
        model: Sequence[torch.nn.Module],
        cfg: LLaDAConfig,
        max_rows: int | None = None,
        groups: ParallelGroups | None = None,
    ) -> None:
        self.model = list(model)
        self.cfg = cfg
        self.max_rows = max_rows  # split a large batch into micro-batches of at most this many rows
        self.groups = groups or current_groups()
        self.is_last_stage = self.groups.is_last_stage

    def _run(self, fn: StageFn, tokens: Tensor, attention_mask: Tensor) -> Tensor | None:
        """Run ``fn(batch, chunk)`` for every micro-batch through the forward-only schedule."""
        rows = tokens.shape[0]
        step_rows = self.max_rows or rows
        batches = [
            (i, tokens[r : r + step_rows], attention_mask[r : r + step_rows])
            for i, r in enumerate(range(0, rows, step_rows))
        ]
        with _eval_mode(self.model):
            out = run_microbatches(
                self.model,
                lambda batch, chunk: (fn(batch, chunk), _collect),
                batches,
                seq_length=tokens.shape[1],
                micro_batch_size=step_rows,
                forward_only=True,
            )
        if not self.is_last_stage:
            return None
        return torch.cat([o["logits"].float() for o in out], dim=0)

    def _chunk_index(self, chunk: torch.nn.Module) -> int:
        return next(i for i, m in enumerate(self.model) if m is chunk)

    @torch.no_grad()
    def __call__(
        self,
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        logits_range: tuple[int, int] | None = None,
    ) -> Tensor | None:
        """Logits [B, T, V/TP] (or [B, stop - start, V/TP] for ``logits_range``) on the last stage."""
        return self._run(
            lambda batch, chunk: llada_forward(chunk, batch[1], batch[2], logits_range),
            tokens,
            attention_mask,
        )

    @torch.no_grad()
    def prefill(
        self,
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        prefix_length: int,
        logits_range: tuple[int, int] | None = None,
        suffix_start: int | None = None,
    ) -> tuple[Tensor | None, PrefixKV]:
        """Full-canvas forward ([B, T]); the cache keeps every local layer's K/V of positions
        < prefix_length (and, for the dual cache, >= suffix_start). Logits as :meth:`__call__` (same
        modules and kernels)."""
        if not 0 <= prefix_length <= tokens.shape[1]:
            raise ValueError(f"prefix_length={prefix_length} outside [0, {tokens.shape[1]}]")
        if suffix_start is not None and not prefix_length <= suffix_start <= tokens.shape[1]:
            raise ValueError(f"suffix_start={suffix_start} outside [{prefix_length}, {tokens.shape[1]}]")
        kv: dict[tuple[int, int], list[KV]] = {}
        suffix_kv: dict[tuple[int, int], list[KV]] = {}

        def fn(batch: Batch, chunk: torch.nn.Module) -> Tensor:
            mb, tok, mask = batch
            state = AttentionCache(mask.bool(), capture=prefix_length, capture_suffix=suffix_start)
            out = stage_forward(unwrap_model(chunk), tok, state, 0, logits_range)
            kv[(self._chunk_index(chunk), mb)] = state.captured  # type: ignore[assignment]
            suffix_kv[(self._chunk_index(chunk), mb)] = state.captured_suffix  # type: ignore[assignment]
            return out

        logits = self._run(fn, tokens, attention_mask)
        if suffix_start is None:
            return logits, PrefixKV(prefix_length, tokens.shape[0], kv)
        return logits, PrefixKV(prefix_length, tokens.shape[0], kv, suffix_start, suffix_kv)

    @torch.no_grad()
    def extend(
        self,
        cache: PrefixKV,
        tokens: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        logits_range: tuple[int, int] | None = None,
    ) -> Tensor | None:
        """Suffix-only forward: tokens [B, T - P] at canvas positions P..T-1 (P = the cache's
        prefix_length), attention_mask the full [B, T] key-padding mask -> logits [B, T - P, V/TP]
        (or the ``logits_range`` canvas span) on the last stage, None elsewhere. With a dual cache the
        tokens are the block [B, S - P] (S = suffix_start) and the logits [B, S - P, V/TP]."""
        p = cache.prefix_length
        stop = attention_mask.shape[1] if cache.suffix_start is None else cache.suffix_start
        if tokens.shape[0] != cache.rows or tokens.shape[1] + p != stop:
            what = "" if cache.suffix_start is None else f" and suffix_start {cache.suffix_start}"
            raise ValueError(
                f"extend: tokens {tuple(tokens.shape)} and mask {tuple(attention_mask.shape)} do not fit a "
                f"cache of {cache.rows} rows with prefix_length {p}{what}"
            )

        def fn(batch: Batch, chunk: torch.nn.Module) -> Tensor:
            mb, tok, mask = batch
            key = (self._chunk_index(chunk), mb)
            suffix = None if cache.suffix_kv is None else cache.suffix_kv[key]
            state = AttentionCache(mask.bool(), past=cache.kv[key], past_suffix=suffix)
            return stage_forward(unwrap_model(chunk), tok, state, p, logits_range)

        return self._run(fn, tokens, attention_mask)

    def cache_rows(self, cache: PrefixKV, index: Tensor) -> PrefixKV:
        """Rows ``index`` [n] (int64) of ``cache``, re-split into this denoiser's micro-batches."""
        step = self.max_rows or len(index)

        def take(kv: dict[tuple[int, int], list[KV]]) -> dict[tuple[int, int], list[KV]]:
            out: dict[tuple[int, int], list[KV]] = {}
            for c in sorted({c for c, _ in kv}):
                mbs = [kv[(c, m)] for m in range(len([k for k in kv if k[0] == c]))]
                for layer in range(len(mbs[0])):
                    k, v = (torch.cat([mb[layer][i] for mb in mbs], dim=1)[:, index] for i in (0, 1))
                    for m, r in enumerate(range(0, len(index), step)):
                        out.setdefault((c, m), []).append((k[:, r : r + step], v[:, r : r + step]))
            return out

        suffix = None if cache.suffix_kv is None else take(cache.suffix_kv)
        return PrefixKV(cache.prefix_length, len(index), take(cache.kv), cache.suffix_start, suffix)

    def vocab_shard(self) -> VocabShard:
        g = self.groups
        return VocabShard(
            tp_group=g.tp_group_or_none,
            vocab_start=g.tp_rank * (self.cfg.embedding_size // g.tp_size),
            real_vocab_size=self.cfg.vocab_size if self.cfg.vocab_size < self.cfg.embedding_size else None,
        )

    def pipeline_comm(self) -> PipelineComm | None:
        if self.groups.pp_size == 1:
            return None
        return PipelineComm(self.groups.pp, self.groups.pp_last_rank)
