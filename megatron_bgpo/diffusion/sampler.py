"""LLaDA sampler (spec §2) for vocab-sharded, pipelined denoisers, plus fast-decoding switches.

Algorithm (LLaDA ``generate.py``): canvas [prompt, MASK x gen_length]; the generated region is split
into semi-autoregressive blocks; each block gets ``steps / num_blocks`` steps and commits tokens by the
linear schedule; at each step the denoiser proposes x0 = argmax(logits / T + Gumbel) (float64; T = 0
is greedy) at the block's masked positions and the most confident proposals are committed (never
re-masked). Confidence is softmax(logits)[x0] (``low_confidence``) or U(0, 1) (``random``).
Classifier-free guidance runs the prompt-masked canvas in the same call:
logits = un + (w + 1) * (cond - un). The MASK id is never proposed.

Denoiser contract: ``denoiser(tokens [B, T], attention_mask [B, T] bool (key padding; attention is
bidirectional), position_ids [B, T]) -> logits [B, T, V_local] fp32`` of this rank's vocab shard
(:class:`VocabShard`) on the last pipeline stage, ``None`` on other stages. The call is collective
over the model-parallel ranks (every rank calls it with the same inputs). Optional: a denoiser with
attribute ``accepts_logits_range = True`` is called with ``logits_range=(start, stop)`` (canvas
positions) and returns only those positions' logits [B, stop - start, V_local]; the sampler reads
one block per step, so this saves the LM head's memory ([B, T, V] fp32 is tens of GB for LLaDA).

Distribution: TP ranks each hold a vocab slice; the proposal and its confidence are combined with
three all-reduces of [B, block] tensors (max, min-id, sum) — no vocab gather. Gumbel and ``random``
confidences come from :mod:`rng`, keyed by (seed, row id, position, step in block, vocab id), so the same seed
gives the same tokens for any TP split. With a :class:`PipelineComm` the last stage decides and
broadcasts the generated region each step. Data-parallel replicas pass distinct ``row_ids`` (or
seeds). Rows are independent of batch composition given the same row id.

Fast decoding (off by default; exact LLaDA when off):
- ``threshold``: commit every masked block token whose confidence exceeds the threshold, at least
  one per step (``threshold_floor='one'``, Fast-dLLM) or at least the scheduled count ('schedule',
  never more steps than the plain sampler).
- ``fill_after_eos``: once a row's decided blocks contain a stop token, the rest of its canvas is
  filled with EOS without model calls (LLaDA-Instruct pads with EOS after the answer).
- ``prefix_cache``: block-wise approximate prefix KV cache (Fast-dLLM). Needs a denoiser implementing
  :class:`PrefixCacheDenoiser`: K/V of the prompt and earlier blocks are computed once per block
  (when the block starts) and reused by the block's later steps, which run only the suffix.
- ``dual_cache``: Fast-dLLM's dual cache: the prefix *and* the suffix (later, still-masked blocks)
  K/V are captured when the block starts; the block's later steps run only the block's tokens.
  Needs a denoiser whose ``prefill`` takes ``suffix_start`` (:class:`PrefixCacheDenoiser`).
- ``early_exit``: a row whose just-finished block is all EOS (after its answer) is done: the rest of
  its canvas is EOS and it gets no further model calls (approximate: the exact sampler would still
  decode those positions; equal when the model would have produced EOS there).
- ``compact_rows``: each call runs only the rows whose current block still has masked positions (rows
  that finished the block early under ``threshold``, or left by ``early_exit``/``fill_after_eos``),
  so the cost falls with the rows still decoding. Exact (rows are independent given their row id);
  with a cache, the denoiser's optional ``cache_rows(cache, index)`` keeps the cached rows in step
  (without it rows are dropped only when a block starts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import Tensor

from megatron_bgpo.diffusion import rng
from megatron_bgpo.diffusion.elbo import response_position_ids
from megatron_bgpo.diffusion.schedule import block_plan, num_transfer_tokens
from megatron_bgpo.diffusion.vocab import VocabShard

__all__ = [
    "Denoiser",
    "PipelineComm",
    "PrefixCacheDenoiser",
    "Prompts",
    "SampleOutput",
    "SamplerConfig",
    "generate",
    "trimmed_lengths",
]

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor | None]


@runtime_checkable
class PrefixCacheDenoiser(Protocol):
    """Optional denoiser extension for the block-wise approximate prefix KV cache.

    ``prefill`` runs the full canvas [B, T] and returns (logits [B, T, V_local] | None, cache) where
    the cache holds every layer's K/V for positions < ``prefix_length``. ``extend`` runs only the
    suffix tokens [B, T - prefix_length] (with their position ids) attending to the cached prefix;
    ``attention_mask`` is the full [B, T] key-padding mask; returns logits [B, T - prefix_length,
    V_local] | None. With ``accepts_logits_range`` both also take ``logits_range`` (canvas positions).

    Dual cache (``SamplerConfig.dual_cache``): ``prefill(..., prefix_length, suffix_start=S)`` also keeps
    the K/V of positions >= S, and ``extend`` then runs only tokens [B, S - prefix_length] (the canvas
    positions prefix_length..S-1) attending to [cached prefix, themselves, cached suffix]. Optional
    ``cache_rows(cache, index [n] int64) -> cache`` keeps rows ``index`` of a cache (row compaction).
    """

    def prefill(
        self, tokens: Tensor, attention_mask: Tensor, position_ids: Tensor, prefix_length: int, **kw: Any
    ) -> tuple[Tensor | None, Any]: ...

    def extend(
        self, cache: Any, tokens: Tensor, attention_mask: Tensor, position_ids: Tensor, **kw: Any
    ) -> Tensor | None: ...


@dataclass(frozen=True)
class PipelineComm:
    """Pipeline layout for the sampler: the group of this rank's stages and the last stage's global rank."""

    group: dist.ProcessGroup
    last_stage_rank: int

    @property
    def is_last(self) -> bool:
        return dist.get_rank() == self.last_stage_rank

    def broadcast(self, x: Tensor) -> Tensor:
        dist.broadcast(x, src=self.last_stage_rank, group=self.group)
        return x


@dataclass
class Prompts:
    """Left-padded prompt batch: input_ids [B, P], attention_mask [B, P] bool, position_ids [B, P]
    (0 at each row's first real token)."""

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor

    @classmethod
    def from_lists(
        cls, seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | None = None
    ) -> Prompts:
        """Left-pad token lists (pad_id must differ from the MASK id)."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.int64)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for i, s in enumerate(seqs):
            if len(s):
                ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.int64)
                mask[i, width - len(s) :] = True
        return cls(ids, mask, cls.positions_from_mask(mask)).to(device)

    @staticmethod
    def positions_from_mask(attention_mask: Tensor) -> Tensor:
        """Position ids counting real tokens from 0 (padding gets 0)."""
        return (attention_mask.to(torch.int64).cumsum(1) - 1).clamp(min=0)

    def to(self, device: torch.device | None) -> Prompts:
        if device is None:
            return self
        return Prompts(
            self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device)
        )

    def take(self, index: Tensor | Sequence[int]) -> Prompts:
        """Rows ``index`` (e.g. the prompt of each MC item)."""
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.input_ids.device)
        return Prompts(self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx])

    def repeat_interleave(self, g: int) -> Prompts:
        """Each prompt g times in a row (G samples per prompt)."""
        return Prompts(
            *(t.repeat_interleave(g, dim=0) for t in (self.input_ids, self.attention_mask, self.position_ids))
        )


@dataclass(frozen=True)
class SamplerConfig:
    """LLaDA ``generate`` arguments (same names) plus the fast-decoding switches (module docstring).

    stop_ids: extra ids that end the text for :func:`trimmed_lengths` (EOS always does), e.g. 126348.
    suppress_eos: LLaDA's ``logits_eos_inf`` (EOS logit set to -inf).
    max_noise_elements: row chunking bound on the [rows, block, V_local] float64 work tensors.
    """

    gen_length: int = 128
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.0
    remasking: Literal["low_confidence", "random"] = "low_confidence"
    cfg_scale: float = 0.0
    mask_id: int = 126336
    eos_id: int = 126081
    stop_ids: tuple[int, ...] = ()
    suppress_eos: bool = False
    threshold: float | None = None
    threshold_floor: Literal["one", "schedule"] = "one"
    fill_after_eos: bool = False
    prefix_cache: bool = False
    dual_cache: bool = False
    early_exit: bool = False
    compact_rows: bool = False
    max_noise_elements: int = 1 << 25

    def __post_init__(self) -> None:
        block_plan(self.gen_length, self.block_length, self.steps)
        if self.remasking not in ("low_confidence", "random"):
            raise ValueError(f"unknown remasking {self.remasking!r}")
        if self.threshold_floor not in ("one", "schedule"):
            raise ValueError(f"unknown threshold_floor {self.threshold_floor!r}")
        if self.temperature < 0 or self.cfg_scale < 0:
            raise ValueError("temperature and cfg_scale must be >= 0")
        if self.prefix_cache and self.dual_cache:
            raise ValueError("prefix_cache and dual_cache are exclusive (dual_cache also caches the prefix)")

    def with_(self, **kw: Any) -> SamplerConfig:
        return replace(self, **kw)


@dataclass
class SampleOutput:
    """tokens: [B, gen_length] generated ids; trace: [B, gen_length] 0-based step that committed each
    token; lengths: [B] tokens before the first stop id (gen_length if none); nfe: denoiser calls (a
    CFG call runs a doubled batch; with ``prefix_cache`` most calls run only the suffix); row_calls:
    the rows those calls ran, summed (nfe x B without ``compact_rows``; CFG doubling not counted)."""

    tokens: Tensor
    trace: Tensor
    lengths: Tensor
    nfe: int
    row_calls: int = 0


def trimmed_lengths(tokens: Tensor, stop_ids: Sequence[int]) -> Tensor:
    """[B, L] -> [B] index of the first stop token in each row (L if none)."""
    stop = torch.zeros_like(tokens, dtype=torch.bool)
    for s in stop_ids:
        stop |= tokens == s
    length = tokens.shape[1]
    idx = torch.arange(length, device=tokens.device).expand_as(tokens)
    return torch.where(stop, idx, torch.full_like(idx, length)).amin(1)


# ---------------------------------------------------------------------------------------------
# one decision step


def _proposals(
    cond: Tensor,
    uncond: Tensor | None,
    cfg: SamplerConfig,
    vocab: VocabShard,
    seed: int,
    row_ids: Tensor,
    positions: Tensor,
    step: int,
) -> tuple[Tensor, Tensor]:
    """Proposed ids and their confidence at the block positions.

    cond/uncond: [B, W, V_local] logits of the block positions; positions: [W] indices in the generated
    region; step: step index within the block (with the position it identifies the draw, so skipped
    steps never shift the noise) -> (x0 [B, W] global ids, conf [B, W] float64). Collective over TP.
    """
    bsz, width, v_local = cond.shape
    device = cond.device
    vocab_ids = vocab.global_ids(v_local, device)
    banned = [vocab.local_index(cfg.mask_id, v_local)]
    if cfg.suppress_eos:
        banned.append(vocab.local_index(cfg.eos_id, v_local))
    banned_cols = [c for c in banned if c is not None]
    low_conf = cfg.remasking == "low_confidence"
    rows = max(1, cfg.max_noise_elements // max(1, width * v_local))
    parts: list[tuple[Tensor, ...]] = []
    for r0 in range(0, bsz, rows):
        r1 = min(bsz, r0 + rows)
        lg = cond[r0:r1].to(torch.float64)
        if uncond is not None:
            un = uncond[r0:r1].to(torch.float64)
            lg = un + (cfg.cfg_scale + 1.0) * (lg - un)
        vocab.mask_padding(lg)
        for c in banned_cols:
            lg[..., c] = float("-inf")
        if cfg.temperature > 0:
            noise = rng.gumbel(
                seed, rng.Stream.GUMBEL, row_ids[r0:r1, None, None], positions[None, :, None], step, vocab_ids
            )
            val, idx = (lg + cfg.temperature * noise).max(-1)
        else:
            val, idx = lg.max(-1)
        l_at = lg.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        if low_conf:
            m = lg.amax(-1)
            m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
            s = torch.exp(lg - m_safe.unsqueeze(-1)).sum(-1)
            parts.append((val, idx + vocab.vocab_start, l_at, m, s))
        else:
            parts.append((val, idx + vocab.vocab_start))
    val, gid, *rest = (torch.cat(p, 0) for p in zip(*parts, strict=True))

    if vocab.distributed:
        if low_conf:
            l_at, m, s = rest
            mx = vocab.all_reduce(torch.stack([val, m]), dist.ReduceOp.MAX)
            gmax, big_m = mx[0], mx[1]
        else:
            gmax = vocab.all_reduce(val.clone(), dist.ReduceOp.MAX)
        cand = torch.where(val == gmax, gid, torch.full_like(gid, torch.iinfo(torch.int64).max))
        x0 = vocab.all_reduce(cand, dist.ReduceOp.MIN)
        if low_conf:
            own = torch.where(gid == x0, l_at, torch.zeros_like(l_at))
            sm = vocab.all_reduce(torch.stack([s * torch.exp(m - big_m), own]), dist.ReduceOp.SUM)
            conf = torch.exp(sm[1] - big_m - torch.log(sm[0]))
    else:
        x0 = gid
        if low_conf:
            l_at, m, s = rest
            conf = torch.exp(l_at - m - torch.log(s))
    if not low_conf:
        conf = rng.uniform(seed, rng.Stream.REMASK, row_ids[:, None], positions[None, :], step)
    return x0, conf


def _select(conf: Tensor, masked: Tensor, n_commit: Tensor) -> Tensor:
    """Commit mask [B, W]: the ``n_commit[b]`` most confident masked positions (ties: lower index)."""
    conf = torch.where(masked, conf, torch.full_like(conf, float("-inf")))
    order = torch.argsort(conf, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(conf.shape[1], device=conf.device).expand_as(order)
    )
    return (rank < n_commit.unsqueeze(1)) & masked


# ---------------------------------------------------------------------------------------------
# the loop


class _Runner:
    """Calls the denoiser (with CFG, the optional prefix / dual cache and row compaction) and slices the
    block logits."""

    def __init__(self, denoiser: Denoiser, cfg: SamplerConfig, prompts: Prompts) -> None:
        if (cfg.prefix_cache or cfg.dual_cache) and not isinstance(denoiser, PrefixCacheDenoiser):
            flag = "prefix_cache" if cfg.prefix_cache else "dual_cache"
            raise TypeError(f"{flag}=True needs a denoiser with prefill/extend (PrefixCacheDenoiser)")
        self.denoiser, self.cfg = denoiser, cfg
        self.cached = cfg.prefix_cache or cfg.dual_cache
        self.p = prompts.input_ids.shape[1]
        self.prompt_real = prompts.attention_mask.to(torch.bool)
        self.cache: Any = None
        self.cache_rows: Tensor | None = None  # batch rows held by the cache (compaction), None = all
        self.prefix = 0
        self.calls = 0
        self.row_calls = 0

    def _inputs(
        self, x: Tensor, attn: Tensor, pos: Tensor, rows: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if self.cfg.cfg_scale <= 0:
            return x, attn, pos
        real = self.prompt_real if rows is None else self.prompt_real[rows]
        un = x.clone()
        un[:, : self.p] = torch.where(real, self.cfg.mask_id, x[:, : self.p])
        return torch.cat([x, un]), torch.cat([attn, attn]), torch.cat([pos, pos])

    def _keep_cache_rows(self, rows: Tensor | None) -> None:
        """Shrink the cache to ``rows`` (a subset of the rows it holds)."""
        if rows is None or self.cache_rows is None or len(rows) == len(self.cache_rows):  # unchanged
            return
        keep = torch.isin(self.cache_rows, rows).nonzero().squeeze(1)
        if self.cfg.cfg_scale > 0:  # the cache holds [cond rows, uncond rows]
            keep = torch.cat([keep, keep + len(self.cache_rows)])
        self.cache = self.denoiser.cache_rows(self.cache, keep)  # type: ignore[attr-defined]
        self.cache_rows = rows

    def can_drop_within_block(self) -> bool:
        return not self.cached or hasattr(self.denoiser, "cache_rows")

    def block_logits(
        self, x: Tensor, attn: Tensor, pos: Tensor, sl: slice, new_block: bool, rows: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None] | None:
        """-> (cond, uncond) logits [B, W, V_local] at generated positions ``sl``; None off the last stage.

        x/attn/pos: the canvas of the rows run (``rows``: their batch indices, None = every row)."""
        tok, am, pi = self._inputs(x, attn, pos, rows)
        self.calls += 1
        self.row_calls += x.shape[0]
        window = (self.p + sl.start, self.p + sl.stop)  # canvas positions whose logits are read
        kw = {"logits_range": window} if getattr(self.denoiser, "accepts_logits_range", False) else {}
        den: Any = self.denoiser
        if not self.cached:
            out, offset = den(tok, am, pi, **kw), 0
        elif new_block:
            self.prefix = window[0]
            extra = {"suffix_start": window[1]} if self.cfg.dual_cache else {}
            out, self.cache = den.prefill(tok, am, pi, self.prefix, **extra, **kw)
            self.cache_rows = rows if rows is not None else torch.arange(x.shape[0], device=x.device)
            offset = 0
        else:
            self._keep_cache_rows(rows)
            stop = window[1] if self.cfg.dual_cache else tok.shape[1]
            out = den.extend(self.cache, tok[:, self.prefix : stop], am, pi[:, self.prefix : stop], **kw)
            offset = self.prefix
        if out is None:
            return None
        if not kw:
            out = out[:, window[0] - offset : window[1] - offset]
        if self.cfg.cfg_scale > 0:
            cond, uncond = out.chunk(2, dim=0)
            return cond, uncond
        return out, None


@torch.no_grad()
def generate(
    denoiser: Denoiser,
    prompts: Prompts,
    config: SamplerConfig,
    *,
    seed: int = 0,
    row_ids: Tensor | None = None,
    vocab: VocabShard | None = None,
    pipeline: PipelineComm | None = None,
) -> SampleOutput:
    """Sample ``config.gen_length`` tokens after each (left-padded) prompt.

    For G samples per prompt pass ``prompts.repeat_interleave(G)`` and distinct ``row_ids`` (default
    ``arange(B)``; make them globally unique across data-parallel replicas). Must be called by every
    rank of the TP and PP groups with the same arguments.
    """
    cfg = config
    plan = block_plan(cfg.gen_length, cfg.block_length, cfg.steps)
    vocab = vocab or VocabShard()
    device = prompts.input_ids.device
    bsz, p = prompts.input_ids.shape
    row_ids = (
        torch.arange(bsz, device=device) if row_ids is None else row_ids.to(device=device, dtype=torch.int64)
    )
    gen = torch.full((bsz, cfg.gen_length), cfg.mask_id, dtype=torch.int64, device=device)
    trace = torch.full_like(gen, -1)
    attn = torch.cat([prompts.attention_mask.to(torch.bool), torch.ones_like(gen, dtype=torch.bool)], dim=1)
    pos = torch.cat(
        [prompts.position_ids, response_position_ids(prompts.position_ids, cfg.gen_length)], dim=1
    )
    runner = _Runner(denoiser, cfg, prompts)
    is_last = pipeline is None or pipeline.is_last
    stop_ids = (cfg.eos_id, *cfg.stop_ids)
    step = 0
    for b in range(plan.num_blocks):
        sl = plan.block_slice(b)
        positions = torch.arange(sl.start, sl.stop, device=device)
        schedule = num_transfer_tokens((gen[:, sl] == cfg.mask_id).sum(1), plan.steps_per_block)
        s = 0
        rows: Tensor | None = None  # compact_rows: the batch rows run this step
        while True:
            masked = gen[:, sl] == cfg.mask_id
            if not bool(masked.any()):
                break
            if s >= max(plan.block_length, plan.steps_per_block):
                raise RuntimeError("block not finished within its step budget")  # unreachable by design
            if cfg.compact_rows and (s == 0 or runner.can_drop_within_block()):
                live = masked.any(1)
                rows = None if bool(live.all()) and rows is None else live.nonzero().squeeze(1)
            x = torch.cat([prompts.input_ids, gen], dim=1)
            if rows is None:
                logits = runner.block_logits(x, attn, pos, sl, new_block=s == 0)
            else:
                logits = runner.block_logits(x[rows], attn[rows], pos[rows], sl, s == 0, rows)
            if is_last:
                assert logits is not None, "the last pipeline stage must return logits"
                r_ids, m, sched = row_ids, masked, schedule
                if rows is not None:
                    r_ids, m, sched = row_ids[rows], masked[rows], schedule[rows]
                x0, conf = _proposals(*logits, cfg, vocab, seed, r_ids, positions, s)
                scheduled = sched[:, s] if s < plan.steps_per_block else torch.zeros_like(sched[:, 0])
                if cfg.threshold is None:
                    n_commit = scheduled
                else:
                    above = ((conf > cfg.threshold) & m).sum(1)
                    floor = m.any(1).to(torch.int64) if cfg.threshold_floor == "one" else scheduled
                    n_commit = torch.maximum(above, floor)
                commit = _select(conf, m, n_commit)
                if rows is None:
                    gen[:, sl] = torch.where(commit, x0, gen[:, sl])
                else:
                    gen[rows, sl] = torch.where(commit, x0, gen[rows, sl])
            if pipeline is not None:
                pipeline.broadcast(gen)
            trace[(trace < 0) & (gen != cfg.mask_id)] = step
            step += 1
            s += 1
        if sl.stop < cfg.gen_length and (cfg.fill_after_eos or cfg.early_exit):
            done = torch.zeros(bsz, dtype=torch.bool, device=device)
            if cfg.fill_after_eos:
                done |= trimmed_lengths(gen[:, : sl.stop], stop_ids) < sl.stop
            if cfg.early_exit:
                done |= (gen[:, sl] == cfg.eos_id).all(1)
            rest = gen[:, sl.stop :]
            fill = done.unsqueeze(1) & (rest == cfg.mask_id)
            gen[:, sl.stop :] = torch.where(fill, torch.full_like(rest, cfg.eos_id), rest)
            trace[:, sl.stop :][fill] = max(step - 1, 0)
    return SampleOutput(
        tokens=gen,
        trace=trace,
        lengths=trimmed_lengths(gen, stop_ids),
        nfe=runner.calls,
        row_calls=runner.row_calls,
    )
