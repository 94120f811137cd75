"""Variance of the n_t-sample ELBO estimate: complementary mask pairs against independent masks.

    python benchmarks/mc_coupling_variance.py            # the table in docs/objectives.md

Same number of forward passes n_t per response for every scheme. Schemes: ``iid`` (independent masks,
u ~ U(0, 1) per sample), ``stratified`` (independent masks, u in [j/n_t, (j+1)/n_t): the project's
default), ``comp-iid`` / ``comp-strat`` (``--mc-coupling complementary``: n_t/2 pairs, each a mask and
its complement, pair levels iid or stratified). Masks come from ``diffusion.masking.sample_masks``.
Two likelihood models:

- ``toy``: the random-weight ``ToyDenoiser`` (V = 64) on random prompts and responses of length L;
- ``ctx``: per-token log-probs -a_i (1 + 4 f) with heterogeneous a_i ~ U(0.2, 3) and f the masked
  fraction of the canvas: a token is harder to predict the less context it sees (the dependence that
  makes the level matter). Pure arithmetic, so L can be the paper's 256.

Printed: the variance over ``--reps`` independent estimates (mean over responses) relative to ``iid``.
"""

from __future__ import annotations

import argparse

import torch

from megatron_bgpo.diffusion.elbo import build_masked_batch, elbo_terms, mc_mean
from megatron_bgpo.diffusion.masking import (
    MaskingSpec,
    counted_positions,
    item_index,
    item_seeds,
    sample_masks,
)
from megatron_bgpo.diffusion.toy import ToyDenoiser
from megatron_bgpo.diffusion.vocab import token_logprobs

SCHEMES = {
    "iid": ("independent", False),
    "stratified": ("independent", True),
    "comp-iid": ("complementary", False),
    "comp-strat": ("complementary", True),
}


def estimates(
    model: str, mode: str, scheme: str, length: int, n_t: int, reps: int, n_resp: int
) -> torch.Tensor:
    """[n_resp, reps] ELBO estimates (each the mean of n_t terms)."""
    coupling, strat = SCHEMES[scheme]
    spec = MaskingSpec(mode=mode, eps=1e-3, stratified=strat, coupling=coupling)
    gen = torch.Generator().manual_seed(length)
    resp_idx, j = item_index(n_resp * reps, n_t)
    rows = resp_idx % n_resp
    counted = torch.ones(len(j), length, dtype=torch.bool)
    smp = sample_masks(counted, item_seeds(1, resp_idx, j, spec), j, n_t, spec)
    if model == "ctx":
        a = 0.2 + 2.8 * torch.rand(n_resp, length, generator=gen, dtype=torch.float64)
        frac = smp.mask.double().mean(1, keepdim=True)
        terms = elbo_terms(-a[rows] * (1.0 + 4.0 * frac), smp.mask, smp.weight).double()
    else:
        vocab, plen = 64, 8
        net = ToyDenoiser(vocab + 1, d_model=32, n_layers=2, n_heads=4, seed=3).eval()
        prompts = torch.randint(0, vocab, (n_resp, plen), generator=gen)
        resp = torch.randint(0, vocab, (n_resp, length), generator=gen)
        pos = torch.arange(plen).expand(n_resp, -1)
        smp.counted = counted_positions(resp[rows], spec)
        batch = build_masked_batch(
            prompts[rows], torch.ones(len(j), plen, dtype=torch.bool), pos[rows], resp[rows], smp, vocab
        )
        with torch.no_grad():
            lp = token_logprobs(net(batch.tokens, batch.attention_mask, batch.position_ids), batch.targets)
        terms = elbo_terms(lp, batch.loss_mask, batch.weight).double()
    return mc_mean(terms, resp_idx, n_resp * reps).view(reps, n_resp).T


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--responses", type=int, default=4)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cases = [("toy", 16), ("ctx", 32), ("ctx", 256)]
    print("| model | L | mode | n_t | " + " | ".join(SCHEMES) + " |")
    print("|---|---|---|---|" + "---|" * len(SCHEMES))
    for model, length in cases:
        for mode in ("continuous", "discrete"):
            for n_t in (2, 4, 8):
                var = {
                    s: float(estimates(model, mode, s, length, n_t, a.reps, a.responses).var(1).mean())
                    for s in SCHEMES
                }
                rel = " | ".join(f"{var[s] / var['iid']:.3f}" for s in SCHEMES)
                print(
                    f"| {model} | {length} | {mode} | {n_t} | {rel} |  (iid var {var['iid']:.4g})", flush=True
                )


if __name__ == "__main__":
    main()
