"""Turn a rollout batch into micro-batches of model canvases for an objective.

Units: a *canvas* is one model input row (prompt + a masked copy of the response); a *row* is the
unit of the objective's sum (rl/objectives.py). For ``mc_sample`` objectives (BGPO) each canvas is a
row, so a micro-batch holds any ``micro_batch_size`` (response, j) items and memory does not depend on
n_t. For ``response`` objectives (VRPO-OL, diffu-GRPO) a row needs all its canvases in one graph:
VRPO-OL packs n_t canvases per response, so its micro-batch grows with n_t. For ``position`` objectives
(JustGRPO) a response makes ceil(L / k) canvases, pass b revealing its first b k tokens; each is a
row, packed like MC samples, so memory does not depend on L / k either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from megatron_bgpo.diffusion import rng
from megatron_bgpo.diffusion.elbo import build_masked_batch
from megatron_bgpo.diffusion.masking import (
    MaskingSpec,
    counted_positions,
    item_seeds,
    mc_seeds,
    sample_masks,
)
from megatron_bgpo.rl.objectives import Objective
from megatron_bgpo.rl.rollout import RolloutBatch


@dataclass
class MicroBatch:
    """One micro-batch of C canvases making ``rows`` objective rows.

    tokens / attention_mask / targets / loss_mask: [C, T]; elbo_weight: [C] (1/t or L/l).
    row_shape: how the C per-canvas quantities fold into rows: (C,) or (rows, K).
    advantages / loss_weight: [rows]. canvas_ids: [C] index of each canvas in the update's canvas list
    (to store and look up old-policy terms). old_terms: filled by the off-policy pre-pass.
    num_mc_samples: n_t the ELBO canvases were drawn with (``PackingConfig``, the one place it is set).
    """

    tokens: Tensor
    attention_mask: Tensor
    targets: Tensor
    loss_mask: Tensor
    elbo_weight: Tensor
    row_shape: tuple[int, ...]
    advantages: Tensor
    loss_weight: Tensor
    canvas_ids: Tensor
    completion_slice: slice
    old_terms: Tensor | None = None
    ref_terms: Tensor | None = None
    num_mc_samples: int = 1

    @property
    def num_canvases(self) -> int:
        return self.tokens.shape[0]

    def to_(self, device: torch.device) -> MicroBatch:
        """Move every tensor field to ``device`` in place (a no-op where they already are); returns self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(self, f.name, value.to(device, non_blocking=True))
        return self


@dataclass(frozen=True)
class PackingConfig:
    """n_t, masking spec, micro-batch size in canvases (mc_sample) or rows (response objectives)."""

    num_mc_samples: int  # n_t: stored here only; micro-batches carry it to the objective
    micro_batch_size: int
    masking: MaskingSpec
    seed: int = 0
    mask_id: int = 126336
    prompt_mask_prob: float = 0.15  # diffu-GRPO: prompt tokens masked w.p. p (d1 uses 0.15)
    iteration: int = 0  # diffu-GRPO: a fresh prompt mask per inner iteration
    ar_block_length: int = 1  # JustGRPO: k response tokens scored (then revealed) per pass

    def __post_init__(self) -> None:
        if self.ar_block_length < 1:
            raise ValueError(f"ar_block_length must be >= 1, got {self.ar_block_length}")


def _elbo_canvases(batch: RolloutBatch, resp: Tensor, j: Tensor, cfg: PackingConfig):
    sub = batch.select(resp)
    seeds = item_seeds(cfg.seed, sub.response_uid, j, cfg.masking)
    sample = sample_masks(
        counted_positions(sub.response_ids, cfg.masking), seeds, j, cfg.num_mc_samples, cfg.masking
    )
    return build_masked_batch(
        sub.prompt_ids, sub.prompt_mask, sub.prompt_position_ids(), sub.response_ids, sample, cfg.mask_id
    ), sub


def _mean_field_canvases(batch: RolloutBatch, resp: Tensor, cfg: PackingConfig):
    """d1's one-step estimate: the whole completion canvas masked (and attended, as d1 feeds the full
    canvas), prompt tokens masked w.p. prompt_mask_prob; log-probs counted on d1's completion mask
    (tokens up to and including the first EOS), whatever ``cfg.masking.count``."""
    sub = batch.select(resp)
    completion = counted_positions(sub.response_ids, replace(cfg.masking, count="first_eos"))
    seeds = mc_seeds(cfg.seed, sub.response_uid, torch.full_like(sub.response_uid, 1_000_003 + cfg.iteration))
    pos = torch.arange(sub.prompt_ids.shape[1])
    drop = rng.uniform(seeds.unsqueeze(1), rng.Stream.MASK_POS, pos.unsqueeze(0)) < cfg.prompt_mask_prob
    prompt = torch.where(drop & sub.prompt_mask, torch.full_like(sub.prompt_ids, cfg.mask_id), sub.prompt_ids)
    full = torch.full_like(sub.response_ids, cfg.mask_id)
    zeros = torch.zeros_like(sub.prompt_mask)
    tokens = torch.cat([prompt, full], 1)
    return (
        tokens,
        torch.cat([sub.prompt_mask, torch.ones_like(completion)], 1),
        torch.cat([sub.prompt_ids, sub.response_ids], 1),
        torch.cat([zeros, completion], 1),
        sub,
    )


def _autoregressive_canvases(batch: RolloutBatch, resp: Tensor, block: Tensor, cfg: PackingConfig):
    """JustGRPO's pass ``block`` of each response ``resp`` ([C], [C]): response tokens before
    block * k visible, the rest MASK; log-probs scored on tokens [block * k, (block + 1) * k) that
    ``cfg.masking.count`` counts (uncounted tokens are key-padded out, as for the ELBO)."""
    sub = batch.select(resp)
    counted = counted_positions(sub.response_ids, cfg.masking)
    pos = torch.arange(sub.response_ids.shape[1]).unsqueeze(0)
    start = (block * cfg.ar_block_length).unsqueeze(1)
    visible = pos < start
    scored = (pos >= start) & (pos < start + cfg.ar_block_length) & counted
    noisy = torch.where(visible, sub.response_ids, torch.full_like(sub.response_ids, cfg.mask_id))
    zeros = torch.zeros_like(sub.prompt_mask)
    return (
        torch.cat([sub.prompt_ids, noisy], 1),
        torch.cat([sub.prompt_mask, counted], 1),
        torch.cat([sub.prompt_ids, sub.response_ids], 1),
        torch.cat([zeros, scored], 1),
        sub,
    )


def _elbo_microbatch(mb, row_shape, advantages, loss_weight, canvas_ids, completion, n_t: int) -> MicroBatch:
    """A MicroBatch over the masked canvases ``mb`` (diffusion.elbo.MaskedBatch)."""
    return MicroBatch(
        mb.tokens,
        mb.attention_mask,
        mb.targets,
        mb.loss_mask,
        mb.weight,
        row_shape,
        advantages,
        loss_weight,
        canvas_ids,
        completion,
        num_mc_samples=n_t,
    )


def _token_microbatch(canvases, advantages, loss_weight, canvas_ids, completion) -> MicroBatch:
    """A MicroBatch of per-token objectives: one row per canvas, terms [rows, L] over ``completion``;
    ``canvases`` = (tokens, attention_mask, targets, loss_mask)."""
    rows = canvases[0].shape[0]
    return MicroBatch(
        *canvases, torch.ones(rows), (rows, -1), advantages, loss_weight, canvas_ids, completion
    )


def build_microbatches(batch: RolloutBatch, objective: Objective, cfg: PackingConfig) -> list[MicroBatch]:
    """Micro-batches covering every row of ``batch`` for ``objective`` (rows with A = 0 are kept;
    drop zero-variance groups before calling when the objective has no KL term)."""
    n_t, mbs = cfg.num_mc_samples, cfg.micro_batch_size
    prompt_len = batch.prompt_ids.shape[1]
    completion = slice(prompt_len, prompt_len + batch.response_ids.shape[1])
    out: list[MicroBatch] = []
    if objective.row == "position":
        passes = -(-batch.response_ids.shape[1] // cfg.ar_block_length)
        resp_all, b_all = (
            torch.arange(len(batch)).repeat_interleave(passes),
            torch.arange(passes).repeat(len(batch)),
        )
        for start in range(0, resp_all.numel(), mbs):
            resp, block = resp_all[start : start + mbs], b_all[start : start + mbs]
            *canvases, sub = _autoregressive_canvases(batch, resp, block, cfg)
            ids = torch.arange(start, start + resp.numel())
            out.append(_token_microbatch(canvases, sub.advantages, sub.loss_weight, ids, completion))
        return out
    if objective.row == "mc_sample":
        resp_all = torch.arange(len(batch)).repeat_interleave(n_t)
        j_all = torch.arange(n_t).repeat(len(batch))
        for start in range(0, resp_all.numel(), mbs):
            resp, j = resp_all[start : start + mbs], j_all[start : start + mbs]
            mb, sub = _elbo_canvases(batch, resp, j, cfg)
            ids = torch.arange(start, start + resp.numel())
            out.append(
                _elbo_microbatch(mb, (resp.numel(),), sub.advantages, sub.loss_weight, ids, completion, n_t)
            )
        return out
    for start in range(0, len(batch), mbs):
        rows = torch.arange(start, min(start + mbs, len(batch)))
        if objective.likelihood == "elbo":
            resp, j = rows.repeat_interleave(n_t), torch.arange(n_t).repeat(rows.numel())
            mb, _ = _elbo_canvases(batch, resp, j, cfg)
            ids = (rows[:, None] * n_t + torch.arange(n_t)).reshape(-1)
            row_shape = (rows.numel(), n_t)
            out.append(
                _elbo_microbatch(
                    mb, row_shape, batch.advantages[rows], batch.loss_weight[rows], ids, completion, n_t
                )
            )
        else:
            *canvases, _ = _mean_field_canvases(batch, rows, cfg)
            out.append(
                _token_microbatch(canvases, batch.advantages[rows], batch.loss_weight[rows], rows, completion)
            )
    return out
