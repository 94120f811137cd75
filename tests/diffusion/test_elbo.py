"""ELBO terms: arithmetic, and Monte-Carlo convergence to the exact ELBO of a tiny model.

The exact value enumerates all 2^L masks of the counted response tokens; with S_m the summed
log-probs of the masked tokens under mask m (|m| = k of L):
  continuous, eps floor:  (1 / (1 - eps)) * int_eps^1 sum_m S_m p^(k-1) (1-p)^(L-k) dp   (Gauss-Legendre,
                          exact for this polynomial)
  discrete:               sum_m S_m / (k * C(L, k))
and the two agree at eps = 0. Complementary coupling's continuous levels lie in [eps, 1 - eps]: the same
integral over that interval (normalised by its length).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from megatron_bgpo.diffusion.elbo import build_masked_batch, elbo_terms, mc_mean
from megatron_bgpo.diffusion.masking import (
    MaskingSpec,
    MaskSample,
    counted_positions,
    item_index,
    item_seeds,
    mc_seeds,
    sample_masks,
)
from megatron_bgpo.diffusion.toy import ToyDenoiser
from megatron_bgpo.diffusion.vocab import token_logprobs

V, MASK, EOS = 7, 6, 5
PROMPTS = torch.tensor([[1, 2, 3], [0, 4, 2], [0, 0, 1]])
PROMPT_MASK = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)
PROMPT_POS = torch.tensor([[0, 1, 2], [0, 0, 1], [0, 0, 0]])
RESPONSES = torch.tensor([[3, 1, 4, 1], [2, EOS, 0, 4], [4, 4, 0, 2]])


@pytest.fixture(scope="module")
def model() -> ToyDenoiser:
    return ToyDenoiser(V, d_model=16, n_layers=1, n_heads=2, seed=3).eval()


def test_elbo_terms_arithmetic():
    lp = torch.tensor([[-1.0, -2.0, float("nan"), -4.0], [-1.0, float("-inf"), -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    w = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(elbo_terms(lp, mask, w), torch.tensor([-6.0, -1.5]))
    terms = torch.tensor([1.0, 3.0, 5.0, 10.0])
    torch.testing.assert_close(
        mc_mean(terms, torch.tensor([0, 0, 1, 0]), 3), torch.tensor([14 / 3, 5.0, 0.0])
    )


@torch.no_grad()
def _evaluate(model, rows, sample, response_ids):
    batch = build_masked_batch(PROMPTS[rows], PROMPT_MASK[rows], PROMPT_POS[rows], response_ids, sample, MASK)
    logits = model(batch.tokens, batch.attention_mask, batch.position_ids)
    return elbo_terms(token_logprobs(logits, batch.targets), batch.loss_mask, batch.weight).double()


def _exact(model, r: int, spec: MaskingSpec) -> dict[str, float]:
    """Exact ELBOs of response r by enumerating masks over its counted tokens."""
    resp = RESPONSES[r : r + 1]
    counted = counted_positions(resp, spec)[0]
    idx = counted.nonzero()[:, 0].tolist()
    big_l = len(idx)
    masks = []
    for bits in itertools.product([False, True], repeat=big_l):
        m = torch.zeros(resp.shape[1], dtype=torch.bool)
        m[idx] = torch.tensor(bits)
        masks.append(m)
    masks = torch.stack(masks)
    n = len(masks)
    unit = MaskSample(torch.ones(n, dtype=torch.float64), masks, torch.ones(n), counted.expand(n, -1))
    s_m = _evaluate(model, [r] * n, unit, resp.expand(n, -1)).numpy()  # weight 1: terms are S_m
    k = masks.sum(1).numpy()
    nodes, wts = np.polynomial.legendre.leggauss(16)

    def continuous(eps: float, hi: float = 1.0) -> float:
        p = eps + (hi - eps) * (nodes + 1) / 2  # map [-1, 1] -> [eps, hi]
        dens = np.array(
            [
                sum(s * pi ** (kk - 1) * (1 - pi) ** (big_l - kk) for s, kk in zip(s_m, k, strict=True) if kk)
                for pi in p
            ]
        )
        return float((wts * dens).sum() / 2)  # (hi - eps) / 2 Jacobian cancels the 1 / (hi - eps)

    discrete = sum(s / (kk * math.comb(big_l, int(kk))) for s, kk in zip(s_m, k, strict=True) if kk)
    hi = 1.0 - spec.eps if spec.coupling == "complementary" else 1.0
    return {
        "continuous": continuous(spec.eps, hi),
        "continuous0": continuous(0.0),
        "discrete": float(discrete),
    }


SPECS = {
    "continuous_strat": MaskingSpec(mode="continuous", eps=1e-3, eos_id=EOS),
    "continuous_plain": MaskingSpec(mode="continuous", eps=0.05, stratified=False, eos_id=EOS),
    "continuous_iid_eps1e-3": MaskingSpec(mode="continuous", eps=1e-3, stratified=False, eos_id=EOS),
    "discrete_iid_first_eos": MaskingSpec(mode="discrete", count="first_eos", stratified=False, eos_id=EOS),
    "discrete_strat": MaskingSpec(mode="discrete", eos_id=EOS),
    "discrete_plain": MaskingSpec(mode="discrete", stratified=False, eos_id=EOS),
    "discrete_first_eos": MaskingSpec(mode="discrete", count="first_eos", eos_id=EOS),
    "continuous_first_eos": MaskingSpec(mode="continuous", count="first_eos", eos_id=EOS),
    "continuous_comp": MaskingSpec(mode="continuous", eps=0.05, coupling="complementary", eos_id=EOS),
    "continuous_comp_iid": MaskingSpec(
        mode="continuous", eps=1e-3, stratified=False, coupling="complementary", eos_id=EOS
    ),
    "discrete_comp": MaskingSpec(mode="discrete", coupling="complementary", eos_id=EOS),
    "discrete_comp_first_eos": MaskingSpec(
        mode="discrete", count="first_eos", stratified=False, coupling="complementary", eos_id=EOS
    ),
}


def _mc(model, spec: MaskingSpec, n_t: int, reps: int, seed: int = 0):
    """reps independent n_t-sample ELBO estimates of every response -> [3, reps]."""
    n_resp = len(RESPONSES) * reps
    resp_idx, j = item_index(n_resp, n_t)
    rows = resp_idx % len(RESPONSES)
    response_ids = RESPONSES[rows]
    seeds = item_seeds(seed, resp_idx, j, spec)
    sample = sample_masks(counted_positions(response_ids, spec), seeds, j, n_t, spec)
    terms = _evaluate(model, rows, sample, response_ids)
    return mc_mean(terms, resp_idx, n_resp).view(reps, len(RESPONSES)).T


@pytest.mark.parametrize("name", list(SPECS))
def test_mc_converges_to_exact_elbo(model, name):
    spec = SPECS[name]
    est = _mc(model, spec, n_t=4, reps=600)
    for r in range(len(RESPONSES)):
        exact = _exact(model, r, spec)
        assert abs(exact["continuous0"] - exact["discrete"]) < 1e-9 * max(1.0, abs(exact["discrete"]))
        target = exact["continuous"] if spec.mode == "continuous" else exact["discrete"]
        mean, se = float(est[r].mean()), float(est[r].std() / math.sqrt(est.shape[1]))
        assert abs(mean - target) < 3 * se, (name, r, mean, target, se)
        assert se < 0.1 * abs(target)  # the test has power


def test_stratification_reduces_variance():
    """Where the per-level term depends on the level (here log p of a token gets worse the more of the
    response is masked), stratified levels cut the variance of the n_t-sample mean."""
    n_t, reps, length = 8, 400, 32
    resp_idx, j = item_index(reps, n_t)
    counted = torch.ones(len(j), length, dtype=torch.bool)
    for mode in ("continuous", "discrete"):
        var = {}
        for strat in (True, False):
            spec = MaskingSpec(mode=mode, eps=0.05, stratified=strat)
            smp = sample_masks(counted, mc_seeds(2, resp_idx, j), j, n_t, spec)
            frac = smp.mask.double().mean(1, keepdim=True)
            lp = -(1.0 + 4.0 * frac).expand(-1, length)
            var[strat] = float(mc_mean(elbo_terms(lp, smp.mask, smp.weight).double(), resp_idx, reps).var())
        assert var[True] < 0.5 * var[False], (mode, var)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_complementary_pairs_partition_the_counted_tokens(mode):
    """Items 2m and 2m + 1 mask disjoint sets whose union is every counted token; weights 1/p, 1/(1-p)
    (continuous) or (L+1)/c, (L+1)/(L-c) (discrete); n_t odd is refused."""
    spec = MaskingSpec(mode=mode, eps=0.05, count="first_eos", coupling="complementary", eos_id=EOS)
    resp_idx, j = item_index(3, 6)
    response_ids = RESPONSES[resp_idx]
    counted = counted_positions(response_ids, spec)
    smp = sample_masks(counted, item_seeds(9, resp_idx, j, spec), j, 6, spec)
    a, b = smp.mask[0::2], smp.mask[1::2]
    assert not (a & b).any() and torch.equal(a | b, counted[0::2])
    n = counted.sum(1).double()
    if mode == "continuous":
        torch.testing.assert_close(smp.level[0::2] + smp.level[1::2], torch.ones(9, dtype=torch.float64))
        assert ((smp.level >= 0.05) & (smp.level <= 0.95)).all()
        torch.testing.assert_close(smp.weight.double(), 1.0 / smp.level, rtol=1e-6, atol=0)
    else:
        c = smp.mask.sum(1).double()
        expect = torch.where(c > 0, (n + 1) / c.clamp(min=1), torch.zeros_like(c))
        torch.testing.assert_close(smp.weight.double(), expect, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="even number of MC samples"):
        sample_masks(counted[:5], item_seeds(9, resp_idx[:5], j[:5], spec), j[:5], 5, spec)


def test_complementary_lowers_variance_at_equal_passes():
    """Same n_t = 4 forward passes per response, log p of a token worse the more of the response is
    masked (as in test_stratification_reduces_variance): complementary pairs (stratified over pairs)
    beat independent masks, stratified or i.i.d. (benchmarks/mc_coupling_variance.py measures more)."""
    n_t, reps, length = 4, 400, 32
    resp_idx, j = item_index(reps, n_t)
    counted = torch.ones(len(j), length, dtype=torch.bool)
    a = 0.2 + 2.8 * torch.rand(length, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for mode in ("continuous", "discrete"):
        var = {}
        for coupling, strat in (("independent", False), ("independent", True), ("complementary", True)):
            spec = MaskingSpec(mode=mode, eps=0.05, stratified=strat, coupling=coupling)
            smp = sample_masks(counted, item_seeds(2, resp_idx, j, spec), j, n_t, spec)
            lp = -a * (1.0 + 4.0 * smp.mask.double().mean(1, keepdim=True))
            terms = elbo_terms(lp, smp.mask, smp.weight).double()
            var[coupling, strat] = float(mc_mean(terms, resp_idx, reps).var())
        assert var["complementary", True] < 0.5 * var["independent", True], (mode, var)
        assert var["complementary", True] < 0.2 * var["independent", False], (mode, var)


def test_same_seed_same_term_under_another_policy(model):
    """Off-policy use: rebuild (t, mask) from the seeds and evaluate under a second model."""
    other = ToyDenoiser(V, d_model=16, n_layers=1, n_heads=2, seed=4).eval()
    spec = MaskingSpec()
    resp_idx, j = item_index(3, 4)
    seeds = mc_seeds(5, resp_idx, j)
    s1 = sample_masks(counted_positions(RESPONSES[resp_idx], spec), seeds, j, 4, spec)
    s2 = sample_masks(counted_positions(RESPONSES[resp_idx], spec), seeds.clone(), j, 4, spec)
    assert torch.equal(s1.mask, s2.mask)
    a = _evaluate(model, resp_idx, s1, RESPONSES[resp_idx])
    b = _evaluate(other, resp_idx, s2, RESPONSES[resp_idx])
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
