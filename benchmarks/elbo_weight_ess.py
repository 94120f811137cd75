"""How many tokens does one SFT batch really average over? The 1/t ELBO weight against weight 1.

    python benchmarks/elbo_weight_ess.py                    # the tiny run: 32 canvases x 32 tokens

Draws the project's masks (``diffusion.masking.sample_masks``, continuous, eps 1e-3) for ``--trials``
batches. A batch's loss is a weighted sum over its masked tokens (weight 1/t for ``elbo_sft``, 1 for
``masked_sft``); its effective sample size ESS = (sum w)^2 / sum w^2 is the number of equally weighted
tokens that would give the same variance. Also printed: the share of the batch's total weight carried
by canvases more than half masked (where the answer canvas hides most cells, so the prompt must be read).
"""

from __future__ import annotations

import argparse

import torch

from megatron_bgpo.diffusion.masking import MaskingSpec, mc_seeds, sample_masks


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--eps", type=float, default=1e-3)
    a = p.parse_args(argv)
    spec = MaskingSpec(mode="continuous", eps=a.eps, stratified=False)
    stats: dict[str, dict[str, list[float]]] = {"elbo_sft (1/t)": {}, "masked_sft (1)": {}}
    for trial in range(a.trials):
        j = torch.zeros(a.batch, dtype=torch.int64)
        seeds = mc_seeds(7, trial * a.batch + torch.arange(a.batch), j)
        s = sample_masks(torch.ones(a.batch, a.length, dtype=torch.bool), seeds, j, 1, spec)
        for name, w in (
            ("elbo_sft (1/t)", s.weight.double()),
            ("masked_sft (1)", torch.ones(a.batch).double()),
        ):
            tok = (w[:, None] * s.mask).reshape(-1)
            per = stats[name]
            per.setdefault("masked", []).append(float(s.mask.sum()))
            per.setdefault("ess", []).append(float(tok.sum() ** 2 / (tok**2).sum()))
            heavy = (s.level > 0.5).double()[:, None] * w[:, None] * s.mask
            per.setdefault("heavy", []).append(float(heavy.sum() / tok.sum()))
    print(f"{a.trials} batches of {a.batch} canvases x {a.length} tokens, t ~ U({a.eps}, 1)")
    print(
        "| loss | masked tokens (mean) | ESS median | ESS 10% quantile | weight on canvases > half masked |"
    )
    print("|---|---|---|---|---|")
    for name, per in stats.items():
        ess = torch.tensor(per["ess"])
        masked, heavy = sum(per["masked"]) / a.trials, sum(per["heavy"]) / a.trials
        print(f"| {name} | {masked:.0f} | {ess.median():.0f} | {ess.quantile(0.1):.0f} | {heavy:.2f} |")


if __name__ == "__main__":
    main()
