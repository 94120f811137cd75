"""Forward (masking) process on responses for Monte-Carlo ELBO terms (spec §3.1, §5.5).

An *item* is one MC sample j of one response: the prompt is never masked, each counted response
token is replaced by MASK, and the item carries the ELBO weight. Two estimators:

- ``continuous``: u ~ U(0, 1), masking probability p = (1 - eps) * u + eps (LLaDA's floor, so the
  weight 1/p <= 1/eps), each counted token masked independently w.p. p, weight 1/p. Unbiased for
  E_{p ~ U(eps, 1)} instead of E_{t ~ U(0, 1)}: the eps floor trades a tiny bias for bounded weights.
- ``discrete``: l = floor(u * L) + 1 ~ U{1..L} over the L counted tokens, exactly l of them masked
  (uniformly without replacement), weight L / l. Same expectation as continuous with eps = 0 and
  lower variance.

Stratified (default): with n_t samples per response, item j draws u in [j/n_t, (j+1)/n_t), so the
n_t items cover the noise levels evenly; the mean over j stays unbiased. Every random choice is a
pure function of the item's integer seed (:func:`mc_seeds` of (response uid, j)), so the same
(t, mask) is rebuilt exactly under another policy (off-policy BGPO, VRPO antithetic sampling).

Counted tokens (``count``): ``canvas`` (default) counts the whole generated canvas including the EOS
padding: the sampler produced all gen_length tokens, so this is the ELBO of the action actually taken,
and LLaDA-Instruct was SFT-trained on EOS-padded canvases (spec §1.5). ``first_eos`` counts tokens
up to and including the first EOS (d1's completion mask) and drops the rest from the sequence (they
are key-padded out, as if the response had been packed without padding, as VRPO does), giving the
ELBO of log p(y_{<=eos} | x).

Coupling (``coupling``): ``independent`` (default) draws every item's mask from its own seed.
``complementary`` (ESPO's ``reduce_var``, DiffuCoder's coupled masks) pairs items j = 2m and 2m + 1:
both use the seed of pair m, and item 2m + 1 masks exactly the counted tokens item 2m left clean, so
each counted token is scored once per pair. Each item keeps the marginal of a single draw, so the mean
stays unbiased (n_t must be even):

- continuous: p = (1 - 2 eps) u + eps for item 2m, 1 - p for its partner (both ~ U(eps, 1 - eps):
  the floor is applied at both ends so neither weight exceeds 1/eps), weights 1/p and 1/(1 - p);
- discrete (ESPO ``forward_process``): c = floor(u (L + 1)) ~ U{0..L} masked for item 2m, L - c for
  its partner, weights (L + 1)/c and (L + 1)/(L - c) (0 when nothing is masked); unbiased for the
  same discrete ELBO, since P(c) (L + 1)/c = 1/c for c >= 1.

Stratified levels then apply to the pairs: pair m draws u in [m/(n_t/2), (m+1)/(n_t/2)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from megatron_bgpo.diffusion import rng

__all__ = [
    "MaskSample",
    "MaskingSpec",
    "counted_positions",
    "item_index",
    "item_seeds",
    "mc_seeds",
    "sample_masks",
]


@dataclass(frozen=True)
class MaskingSpec:
    """How MC items are drawn. See the module docstring for the semantics of each field."""

    mode: Literal["continuous", "discrete"] = "continuous"
    eps: float = 1e-3
    stratified: bool = True
    count: Literal["canvas", "first_eos"] = "canvas"
    eos_id: int = 126081
    coupling: Literal["independent", "complementary"] = "independent"

    def __post_init__(self) -> None:
        if self.mode not in ("continuous", "discrete"):
            raise ValueError(f"unknown masking mode {self.mode!r}")
        if self.count not in ("canvas", "first_eos"):
            raise ValueError(f"unknown count {self.count!r}")
        if self.coupling not in ("independent", "complementary"):
            raise ValueError(f"unknown coupling {self.coupling!r} (independent | complementary)")
        if not 0.0 <= self.eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {self.eps}")


@dataclass
class MaskSample:
    """A batch of N items over responses of length L.

    level: [N] float64, the masking probability p (continuous) or the fraction l / L (discrete).
    mask: [N, L] bool, response positions replaced by MASK (always a subset of ``counted``).
    weight: [N] fp32 ELBO weight (1/p or L/l; 0 if nothing is counted).
    counted: [N, L] bool, response positions that are part of the sequence being scored.
    """

    level: Tensor
    mask: Tensor
    weight: Tensor
    counted: Tensor


def counted_positions(response_ids: Tensor, spec: MaskingSpec) -> Tensor:
    """[N, L] ids -> [N, L] bool of the response tokens the ELBO counts (see ``spec.count``)."""
    if spec.count == "canvas":
        return torch.ones_like(response_ids, dtype=torch.bool)
    is_eos = (response_ids == spec.eos_id).to(torch.int64)
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS strictly before this position
    return eos_before == 0


def item_index(num_responses: int, n_t: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Response index and MC index j of the N = num_responses * n_t items, response-major: ([N], [N])."""
    resp = torch.arange(num_responses, device=device).repeat_interleave(n_t)
    j = torch.arange(n_t, device=device).repeat(num_responses)
    return resp, j


def mc_seeds(seed: int, response_uid: Tensor, j: Tensor) -> Tensor:
    """Per-item int64 seeds (>= 0) from a run seed, a globally unique response id and the MC index."""
    w1, w2 = rng.key_words(seed, rng.Stream.SEED, response_uid, j)
    return (w1 << 30) ^ w2


def item_seeds(seed: int, response_uid: Tensor, j: Tensor, spec: MaskingSpec) -> Tensor:
    """Seeds to pass to :func:`sample_masks`: :func:`mc_seeds` of (uid, j), or of (uid, j // 2) for
    complementary coupling (both items of a pair share the randomness)."""
    return mc_seeds(seed, response_uid, j // 2 if spec.coupling == "complementary" else j)


def sample_masks(counted: Tensor, seeds: Tensor, j: Tensor, n_t: int, spec: MaskingSpec) -> MaskSample:
    """Draw (level, mask, weight) for N items, a pure function of (seeds, j, n_t, counted, spec).

    counted: [N, L] bool; seeds: [N] int64 (from :func:`item_seeds`); j: [N] MC index in [0, n_t)
    (used when stratified, and for the pair member under complementary coupling).
    """
    if spec.coupling == "complementary":
        return _complementary_masks(counted, seeds, j, n_t, spec)
    length = counted.shape[1]
    device = counted.device
    v = rng.uniform(seeds, rng.Stream.MASK_LEVEL)  # [N] in (0, 1)
    u = (j.to(torch.float64) + v) / n_t if spec.stratified else v
    pos = torch.arange(length, device=device)
    keys = rng.uniform(seeds.unsqueeze(1), rng.Stream.MASK_POS, pos.unsqueeze(0))  # [N, L]
    n_counted = counted.sum(1)
    if spec.mode == "continuous":
        level = (1.0 - spec.eps) * u + spec.eps
        mask = (keys < level.unsqueeze(1)) & counted
        weight = (1.0 / level).to(torch.float32)
    else:
        n_mask = torch.minimum(torch.floor(u * n_counted).to(torch.int64) + 1, n_counted)
        keys = torch.where(counted, keys, torch.full_like(keys, 2.0))  # uncounted sort last
        rank = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1)
        mask = (rank < n_mask.unsqueeze(1)) & counted
        safe = n_mask.clamp(min=1).to(torch.float64)
        level = n_mask.to(torch.float64) / n_counted.clamp(min=1).to(torch.float64)
        weight = (n_counted.to(torch.float64) / safe).to(torch.float32)
    weight = torch.where(n_counted > 0, weight, torch.zeros_like(weight))
    return MaskSample(level=level, mask=mask, weight=weight, counted=counted)


def _complementary_masks(
    counted: Tensor, seeds: Tensor, j: Tensor, n_t: int, spec: MaskingSpec
) -> MaskSample:
    """Complementary pairs (module docstring): item 2m draws as usual, item 2m + 1 masks the rest."""
    if n_t % 2:
        raise ValueError(f"complementary coupling needs an even number of MC samples, got n_t = {n_t}")
    pairs = n_t // 2
    second = (j % 2 == 1).unsqueeze(1)  # [N, 1]
    v = rng.uniform(seeds, rng.Stream.MASK_LEVEL)
    u = ((j // 2).to(torch.float64) + v) / pairs if spec.stratified else v
    pos = torch.arange(counted.shape[1], device=counted.device)
    keys = rng.uniform(seeds.unsqueeze(1), rng.Stream.MASK_POS, pos.unsqueeze(0))  # [N, L]
    n_counted = counted.sum(1)
    if spec.mode == "continuous":
        first_level = (1.0 - 2.0 * spec.eps) * u + spec.eps
        first = (keys < first_level.unsqueeze(1)) & counted
        level = torch.where(second[:, 0], 1.0 - first_level, first_level)
        weight = (1.0 / level).to(torch.float32)
    else:
        c = torch.minimum(torch.floor(u * (n_counted + 1)).to(torch.int64), n_counted)
        keys = torch.where(counted, keys, torch.full_like(keys, 2.0))  # uncounted sort last
        rank = torch.argsort(torch.argsort(keys, dim=1, stable=True), dim=1)
        first = (rank < c.unsqueeze(1)) & counted
        n_mask = torch.where(second[:, 0], n_counted - c, c)
        level = n_mask.to(torch.float64) / n_counted.clamp(min=1).to(torch.float64)
        weight = ((n_counted + 1).to(torch.float64) / n_mask.clamp(min=1).to(torch.float64)).to(torch.float32)
        weight = torch.where(n_mask > 0, weight, torch.zeros_like(weight))
    mask = torch.where(second, counted & ~first, first)
    weight = torch.where(n_counted > 0, weight, torch.zeros_like(weight))
    return MaskSample(level=level, mask=mask, weight=weight, counted=counted)
