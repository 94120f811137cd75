"""Policy objectives behind one registry: each is one small function over per-row terms.

A *row* is the unit an objective's loss is a plain sum over: one Monte Carlo sample (t, mask) of one
response for BGPO (which is what makes its memory independent of n_t), a whole response for the
non-linear baselines. Every function returns the SUM over its rows of ``weight * row_loss``, where
``weights`` are global coefficients fixed before the update (e.g. 1 / (G * prompts in the batch)).
Summing micro-batch losses over micro-batches and data-parallel ranks therefore gives the exact
batch loss, whatever the packing. Formulas: docs/objectives.md and spec §4-5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class ObjectiveConfig:
    """Hyper-parameters shared by the objectives (each uses the fields it needs)."""

    bound: Literal["both", "taylor", "jensen"] = "both"  # BGPO ablation switch (paper Table 3)
    max_log_ratio: float = 20.0  # overflow guard: exp(d) is evaluated at min(d, max_log_ratio)
    clip_eps: float | None = None  # PPO clip (vrpo_ol: off by default; diffu_grpo: 0.5 in d1)
    kl_beta: float = 0.0  # k3 KL to the reference policy

    def __post_init__(self) -> None:
        if self.bound not in ("both", "taylor", "jensen"):
            raise ValueError(f"bound must be 'both', 'taylor' or 'jensen', got {self.bound!r}")
        if self.clip_eps is not None and not 0 < self.clip_eps < 1:
            raise ValueError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.kl_beta < 0:
            raise ValueError(f"kl_beta must be >= 0, got {self.kl_beta}")


@dataclass
class RowTerms:
    """Inputs of one micro-batch's rows.

    logp: current-policy log-likelihood terms, with grad. [N] (one ELBO term per MC-sample row) or
        [N, K] (K MC ELBO terms, or K per-token log-probs, per response row).
    advantages: [N]. weights: [N] global loss coefficients.
    old_logp / ref_logp: same shape as logp, no grad; old None means on-policy (detached current).
    valid: [N, K] bool for 2-D terms (padding MC samples / tokens outside the completion).
    num_mc_samples: n_t, the MC samples drawn per response (from the micro-batch, which packed them);
        the 1/n_t of the mc_sample objectives (bgpo, elbo_sft).
    """

    logp: torch.Tensor
    advantages: torch.Tensor
    weights: torch.Tensor
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    num_mc_samples: int | None = None

    def mc_samples(self, name: str) -> int:
        """n_t, required by the mc_sample objective ``name``."""
        if self.num_mc_samples is None or self.num_mc_samples < 1:
            raise ValueError(f"{name} needs num_mc_samples >= 1 (n_t), got {self.num_mc_samples}")
        return self.num_mc_samples

    def log_ratio(self) -> torch.Tensor:
        old = self.logp.detach() if self.old_logp is None else self.old_logp
        return self.logp - old


ObjectiveFn = Callable[[RowTerms, ObjectiveConfig], tuple[torch.Tensor, dict[str, float]]]


def _guarded_exp(
    d: torch.Tensor, limit: float, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """exp(min(d, limit)) computed in at least fp32, and its counts: ``overflow_guard`` (clamped
    entries) and ``exp_rows`` (entries checked; both restricted to ``valid`` when given)."""
    work = d if d.dtype == torch.float64 else d.float()
    over = work > limit
    counted = over if valid is None else over & valid
    rows = d.numel() if valid is None else int(valid.sum())
    exp_d = torch.exp(torch.where(over, torch.full_like(work, limit), work))
    return exp_d, {"overflow_guard": float(counted.sum()), "exp_rows": float(rows)}


def _clipped_token_loss(
    rows: RowTerms, cfg: ObjectiveConfig, name: str, default_eps: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token PPO loss [N, K], zero outside ``rows.valid``: -min(rho A, clip(rho, 1-eps, 1+eps) A)
    + beta * k3(ref, cur); eps = ``cfg.clip_eps`` or ``default_eps``. Stats: the exp guard counts and
    ``ppo_clipped`` (valid tokens with |rho - 1| > eps)."""
    if rows.valid is None:
        raise ValueError(f"{name} needs the per-token mask (valid)")
    eps = default_eps if cfg.clip_eps is None else cfg.clip_eps
    log_ratio = rows.log_ratio()
    ratio, guard = _guarded_exp(log_ratio, cfg.max_log_ratio, rows.valid)
    ratio = ratio.to(log_ratio.dtype)
    a = rows.advantages.to(ratio.dtype)[:, None]
    per_token = -torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)
    if cfg.kl_beta > 0:
        if rows.ref_logp is None:
            raise ValueError(f"{name} with kl_beta > 0 needs reference-policy log-probs")
        diff = rows.ref_logp - rows.logp
        per_token = per_token + cfg.kl_beta * (torch.exp(diff) - diff - 1)
    clipped = ((ratio - 1).abs() > eps) & rows.valid
    per_token = torch.where(rows.valid, per_token, torch.zeros_like(per_token))
    return per_token, {**guard, "ppo_clipped": float(clipped.sum())}


def bgpo(rows: RowTerms, cfg: ObjectiveConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """BGPO lower bound (spec §5.2). Row = one MC sample j of a response; logp [N] = l_theta(j).

    d_j = l_theta(j) - l_old(j) on the same (t, mask);
    g_j = (1 + d_j) A / n_t if A >= 0 (tangent bound),  g_j = exp(d_j) A / n_t if A < 0 (Jensen);
    loss = -sum_rows weight * g_j.
    """
    d = rows.log_ratio()
    a = rows.advantages.to(d.dtype)
    exp_d, guard = _guarded_exp(d, cfg.max_log_ratio)
    taylor = (1.0 + d) * a
    jensen = exp_d.to(d.dtype) * a
    if cfg.bound == "taylor":
        g = taylor
    elif cfg.bound == "jensen":
        g = jensen
    else:
        g = torch.where(a >= 0, taylor, jensen)
    g = g / rows.mc_samples("bgpo")
    loss = -(rows.weights.to(g.dtype) * g).sum()
    return loss, {**guard, "log_ratio_abs_max": float(d.detach().abs().max())}


def vrpo_ol(rows: RowTerms, cfg: ObjectiveConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Non-linear ELBO objective R = exp(mean_j d_j) A (VRPO-OL, spec §5.1). Row = a response with
    all its n_t samples in one graph: logp [N, n_t]. Optional PPO clip and k3 KL on the mean ELBO."""
    valid = rows.valid if rows.valid is not None else torch.ones_like(rows.logp, dtype=torch.bool)
    count = valid.sum(-1).clamp_min(1)
    d = (rows.log_ratio() * valid).sum(-1) / count
    a = rows.advantages.to(d.dtype)
    ratio, guard = _guarded_exp(d, cfg.max_log_ratio)
    ratio = ratio.to(d.dtype)
    objective = ratio * a
    if cfg.clip_eps is not None:
        objective = torch.minimum(objective, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
    loss_rows = -objective
    if cfg.kl_beta > 0:
        if rows.ref_logp is None:
            raise ValueError("vrpo_ol with kl_beta > 0 needs reference-policy ELBO terms")
        diff = ((rows.ref_logp - rows.logp) * valid).sum(-1) / count
        loss_rows = loss_rows + cfg.kl_beta * (torch.exp(diff) - diff - 1)
    loss = (rows.weights.to(loss_rows.dtype) * loss_rows).sum()
    return loss, {**guard, "log_ratio_abs_max": float(d.detach().abs().max())}


def diffu_grpo(rows: RowTerms, cfg: ObjectiveConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """d1's diffu-GRPO (spec §4.2). Row = a response; logp [N, L] per-token one-step mean-field log-probs,
    valid [N, L] d1's completion mask (tokens up to and including the first EOS).

    per token: -min(rho A, clip(rho, 1-eps, 1+eps) A) + beta * (exp(ref - cur) - (ref - cur) - 1);
    per row: the mean over its valid tokens (d1's ``sum(loss * mask) / sum(mask)`` for one completion);
    loss = sum_rows weight * row mean, with weight = 1 / (completions in the batch), i.e. d1's loss
    averaged over completions, independent of how long they are.
    """
    per_token, stats = _clipped_token_loss(rows, cfg, "diffu_grpo", 0.5)
    tokens = rows.valid.sum(-1).clamp_min(1).to(per_token.dtype)
    per_row = per_token.sum(-1) / tokens
    return (rows.weights.to(per_row.dtype) * per_row).sum(), stats


def just_grpo(rows: RowTerms, cfg: ObjectiveConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """JustGRPO (LeapLabTHU/JustGRPO ``grpo.py::logprob_loss``): GRPO on the exact autoregressive-order
    likelihood. Row = one pass over one response: logp [N, L] per-token log-probs of the tokens this pass
    scores (``valid`` [N, L]: block b of k tokens, given the prompt, the earlier tokens and a fully
    masked remainder; k = 1 is JustGRPO), so a response's L/k rows sum to its full likelihood.

    per token: -min(rho A, clip(rho, 1-eps, 1+eps) A) + beta * k3, eps = 0.2 by default (JustGRPO);
    per row: sum over its valid tokens / L (JustGRPO's ``scale = 1 / gen_length``);
    loss = sum_rows weight * row loss (weight fixed per response: 1 / (G * prompts) in the loop).
    """
    per_token, stats = _clipped_token_loss(rows, cfg, "just_grpo", 0.2)
    per_row = per_token.sum(-1) / rows.logp.shape[-1]
    return (rows.weights.to(per_row.dtype) * per_row).sum(), stats


def elbo_sft(rows: RowTerms, cfg: ObjectiveConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked-diffusion SFT on reference completions. Row = one MC sample; loss = -sum weight * l_j / n_t.

    ``elbo_sft`` (likelihood ``elbo``): l_j = (1/t) sum of masked-token log-probs; with weight =
    1 / (responses x L) this is LLaDA's SFT loss (answer-length normalised, spec §3.1).
    ``masked_sft`` (likelihood ``masked_ce``): the same sum without the 1/t factor, i.e. masked-token
    cross-entropy at t ~ U(eps, 1). Not the ELBO (it under-weights lightly masked canvases), but its
    per-sample weights are all 1 instead of up to 1/eps; the tiny CPU run learns with it and not
    with ``elbo_sft`` (docs/training.md).
    """
    loss = -(rows.weights.to(rows.logp.dtype) * rows.logp).sum() / rows.mc_samples("elbo_sft")
    return loss, {}


@dataclass(frozen=True)
class Objective:
    """A registered objective and what it needs from the update loop."""

    name: str
    fn: ObjectiveFn
    row: Literal["mc_sample", "response", "position"]  # one row (and one gradient-accumulation unit)
    likelihood: Literal["elbo", "masked_ce", "mean_field", "autoregressive"]  # how logp is estimated
    supervised: bool = False  # trains on the task's reference completions instead of rollouts


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; registered: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


register(Objective("bgpo", bgpo, row="mc_sample", likelihood="elbo"))
register(Objective("vrpo_ol", vrpo_ol, row="response", likelihood="elbo"))
register(Objective("diffu_grpo", diffu_grpo, row="response", likelihood="mean_field"))
register(Objective("just_grpo", just_grpo, row="position", likelihood="autoregressive"))
register(Objective("elbo_sft", elbo_sft, row="mc_sample", likelihood="elbo", supervised=True))
register(Objective("masked_sft", elbo_sft, row="mc_sample", likelihood="masked_ce", supervised=True))
