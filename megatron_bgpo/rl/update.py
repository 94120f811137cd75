"""One policy update: MC-sample micro-batches through megatron-core's pipeline schedule.

Each micro-batch's loss is the objective's sum of ``weight * row_loss`` over its rows (weights fixed
globally beforehand), reported to the schedule with a token count of 1 and
``calculate_per_token_loss=True``, so megatron-core neither divides by the number of micro-batches
nor averages over data-parallel ranks (parallel/ddp.py): the accumulated gradient is the gradient of
the exact batch loss for any micro-batch size, number of micro-batches, TP, PP or DP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from megatron_bgpo.diffusion.elbo import elbo_terms
from megatron_bgpo.models.llada.model import llada_selected_logprobs
from megatron_bgpo.parallel.schedule import run_microbatches
from megatron_bgpo.rl.microbatches import MicroBatch
from megatron_bgpo.rl.objectives import Objective, ObjectiveConfig, RowTerms


def policy_terms(mb: MicroBatch, lp: torch.Tensor, objective: Objective) -> tuple:
    """Current-policy terms of a micro-batch from its target log-probs [C, T] (fp32, zero outside
    ``mb.loss_mask``): (terms, valid).

    ELBO objectives: one term per canvas, folded to ``mb.row_shape`` (``masked_ce``: the same sum
    with weight 1 instead of the ELBO weight). Mean-field objectives: per-token log-probs over the
    completion [rows, L] and the completion mask.
    """
    if objective.likelihood in ("elbo", "masked_ce"):
        weight = mb.elbo_weight if objective.likelihood == "elbo" else torch.ones_like(mb.elbo_weight)
        return elbo_terms(lp, mb.loss_mask, weight).reshape(mb.row_shape), None
    return lp[:, mb.completion_slice], mb.loss_mask[:, mb.completion_slice]


@dataclass
class UpdateStats:
    """Sums over this rank's micro-batches (last pipeline stage; zeros elsewhere).

    log_ratio_mismatches: with ``expect_zero_log_ratio``, one line per micro-batch whose d = current -
    old terms was not exactly 0, naming the canvases and values.
    """

    loss: float = 0.0
    num_microbatches: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    log_ratio_mismatches: list[str] = field(default_factory=list)

    def add(self, loss: float, stats: dict[str, float]) -> None:
        self.loss += loss
        self.num_microbatches += 1
        for k, v in stats.items():
            self.extra[k] = (
                max(self.extra.get(k, 0.0), v) if k.endswith("_max") else self.extra.get(k, 0.0) + v
            )


def _forward(mb: MicroBatch, chunk: torch.nn.Module, tp_group, chunk_rows: int) -> torch.Tensor:
    """One stage's forward of a micro-batch: target log-probs [C, T] on the last stage (hidden states on
    the others), the output layer on the loss positions only, ``chunk_rows`` rows at a time."""
    return llada_selected_logprobs(
        chunk, mb.tokens, mb.attention_mask, mb.targets, mb.loss_mask, tp_group, chunk_rows
    )


def _seq_hint(microbatches: Sequence[MicroBatch]) -> tuple[int, int]:
    return max(mb.tokens.shape[1] for mb in microbatches), max(mb.num_canvases for mb in microbatches)


def log_ratio_mismatch(mb: MicroBatch, terms: torch.Tensor, valid: torch.Tensor | None, show: int = 4) -> str:
    """'' if every entry of terms - mb.old_terms is exactly 0, else a line naming the first ``show``
    offending canvases (ids in the update's canvas list) and values. ELBO terms: one entry per canvas;
    per-token terms: entries over ``valid`` [rows, L], canvas = the row's canvas, plus the token."""
    d = terms.detach() - mb.old_terms.reshape(terms.shape)
    bad = d != 0  # also NaN
    if valid is not None:
        bad &= valid
    if not bool(bad.any()):
        return ""
    where = bad.nonzero().tolist()
    total = bad.numel() if valid is None else int(valid.sum())
    shown = []
    for idx in where[:show]:
        if valid is None:
            where_txt = f"canvas {int(mb.canvas_ids.reshape(terms.shape)[tuple(idx)])}"
        else:
            where_txt = f"canvas {int(mb.canvas_ids[idx[0]])} token {idx[1]}"
        shown.append(f"{where_txt}: d = {float(d[tuple(idx)]):.3e}")
    return f"{len(where)} of {total} terms nonzero ({'; '.join(shown)})"


def policy_update(
    model: Sequence[torch.nn.Module],
    microbatches: Sequence[MicroBatch],
    objective: Objective,
    cfg: ObjectiveConfig,
    tp_group,
    expect_zero_log_ratio: bool = False,
    logprob_chunk_rows: int = 1024,
    moe_aux_loss_weight: float | None = None,
) -> UpdateStats:
    """Forward + backward of every micro-batch; gradients accumulate in the (DDP) grad buffers.

    The caller zeroes gradients before and steps the optimizer after. ``expect_zero_log_ratio``: the
    old terms were computed with the current weights (first update after a rollout), so current - old
    must be exactly 0; offending micro-batches are listed in ``log_ratio_mismatches`` for the caller
    to raise on every rank at once. ``logprob_chunk_rows``: rows of the output layer per chunk
    (models/logprobs.py `chunked_token_logprobs`; <= 0: all at once). ``moe_aux_loss_weight``: per
    micro-batch weight of an MoE model's router aux loss (parallel/schedule.py; docs/moe.md).
    """
    mismatches: list[str] = []

    def step(mb: MicroBatch, chunk: torch.nn.Module):
        output = _forward(mb, chunk, tp_group, logprob_chunk_rows)

        def loss_fn(lp: torch.Tensor):
            terms, valid = policy_terms(mb, lp, objective)
            if expect_zero_log_ratio and mb.old_terms is not None:
                line = log_ratio_mismatch(mb, terms, valid)
                if line:
                    mismatches.append(line)
            old = None if mb.old_terms is None else mb.old_terms.reshape(terms.shape)
            ref = None if mb.ref_terms is None else mb.ref_terms.reshape(terms.shape)
            rows = RowTerms(
                terms, mb.advantages, mb.loss_weight, old, ref, valid, num_mc_samples=mb.num_mc_samples
            )
            loss, stats = objective.fn(rows, cfg)
            return loss, torch.ones((), dtype=torch.int), {"loss": loss.detach().item(), **stats}

        return output, loss_fn

    seq, mbs = _seq_hint(microbatches)
    reported = run_microbatches(
        model,
        step,
        microbatches,
        seq_length=seq,
        micro_batch_size=mbs,
        moe_aux_loss_weight=moe_aux_loss_weight,
    )
    stats = UpdateStats(log_ratio_mismatches=mismatches)
    for r in reported:
        stats.add(r.pop("loss"), r)
    return stats


@torch.no_grad()
def attach_policy_terms(
    model: Sequence[torch.nn.Module],
    microbatches: Sequence[MicroBatch],
    objective: Objective,
    tp_group,
    target: str = "old_terms",
    logprob_chunk_rows: int = 1024,
) -> None:
    """Forward-only pass storing each micro-batch's terms under ``target`` ("old_terms" before the first
    off-policy update, "ref_terms" under a reference model). Same seeded masks, so the same (t, mask).
    Only the last pipeline stage (which computes losses) receives the values."""

    def step(mb: MicroBatch, chunk: torch.nn.Module):
        output = _forward(mb, chunk, tp_group, logprob_chunk_rows)

        def loss_fn(lp: torch.Tensor):
            terms, _ = policy_terms(mb, lp, objective)
            return torch.zeros(()), torch.ones((), dtype=torch.int), {"terms": terms.detach().clone()}

        return output, loss_fn

    seq, mbs = _seq_hint(microbatches)
    reported = run_microbatches(
        model, step, microbatches, seq_length=seq, micro_batch_size=mbs, forward_only=True
    )
    if reported:
        for mb, r in zip(microbatches, reported, strict=True):
            setattr(mb, target, r["terms"])
