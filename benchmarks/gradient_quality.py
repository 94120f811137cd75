"""Gradient quality vs n_t at tiny scale (the paper's Fig. 3 protocol): for one fixed batch, the gradient
is computed ``--trials`` times per n_t with fresh MC masks; we report the per-parameter standard
deviation (averaged over parameters) and the relative bias of the mean gradient against a "golden"
ELBO gradient with n_t = ``--golden-nt``.

    python benchmarks/gradient_quality.py [--n-t 1 2 4 8 16] [--trials 8] [--golden-nt 256]

On-policy, ``bgpo`` and ``vrpo_ol`` have the same gradient for the same masks (tests/rl); their rows
differ only in that VRPO-OL must hold all n_t samples in memory. ``diffu_grpo`` uses d1's one-step
mean-field estimate (fresh prompt mask per trial), so its n_t does not apply and its bias is measured
against the same ELBO golden gradient.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-t", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--golden-nt", type=int, default=256)
    p.add_argument("--objectives", nargs="+", default=["bgpo", "vrpo_ol", "diffu_grpo"])
    args = p.parse_args()

    from megatron_bgpo.checkpointing.llada_mapping import dict_reader, load_hf_into_model
    from megatron_bgpo.diffusion.masking import MaskingSpec
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.models.llada.reference import random_hf_weights
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
    from megatron_bgpo.rl.objectives import ObjectiveConfig, get_objective
    from megatron_bgpo.rl.rollout import RolloutBatch
    from megatron_bgpo.training.policy import Policy

    parallel = ParallelConfig(1, 1)
    groups_ = parallel_groups(parallel, init_distributed())
    set_seed(0)
    cfg = get_preset("tiny")
    policy = Policy.build(cfg, parallel, groups_, torch.float32, ddp=True)
    (chunk,) = [m.module for m in policy.model]
    load_hf_into_model(chunk, cfg, dict_reader(random_hf_weights(cfg, seed=1)), 0, 1)
    gen = torch.Generator().manual_seed(0)
    groups, g, prompt_len, gen_len = 2, 4, 12, 24
    batch = RolloutBatch(
        prompt_ids=torch.randint(0, 250, (groups, prompt_len), generator=gen).repeat_interleave(g, 0),
        prompt_mask=torch.ones(groups * g, prompt_len, dtype=torch.bool),
        response_ids=torch.randint(0, 250, (groups * g, gen_len), generator=gen),
        advantages=torch.tensor([1.2, -0.4, 0.5, -1.3, 0.9, 0.3, -0.8, -0.4], dtype=torch.float64),
        response_uid=torch.arange(groups * g),
        loss_weight=torch.full((groups * g,), 1.0 / (groups * g), dtype=torch.float64),
    )

    def gradient(name: str, n_t: int, seed: int) -> torch.Tensor:
        objective = get_objective(name)
        packing = PackingConfig(
            n_t,
            64,
            MaskingSpec(eos_id=cfg.eos_token_id),
            seed=seed,
            mask_id=cfg.mask_token_id,
            iteration=seed,
        )
        cfg_obj = ObjectiveConfig(clip_eps=0.2) if name == "diffu_grpo" else ObjectiveConfig()
        policy.gradients(build_microbatches(batch, objective, packing), objective, cfg_obj)
        return torch.cat([q.main_grad.flatten().double() for q in chunk.parameters()])

    golden = gradient("bgpo", args.golden_nt, seed=10_000)
    print(
        f"# tiny LLaDA ({cfg.num_parameters / 1e6:.2f}M params), {groups} prompts x G={g}, "
        f"prompt {prompt_len} + "
        f"response {gen_len} tokens; {args.trials} trials; golden: bgpo n_t={args.golden_nt}"
    )
    print(f"{'objective':<11} {'n_t':>4} {'mean per-param std':>19} {'rel. bias':>10}")
    for name in args.objectives:
        for n_t in args.n_t if name != "diffu_grpo" else [1]:
            grads = torch.stack([gradient(name, n_t, seed) for seed in range(args.trials)])
            std = grads.std(dim=0).mean().item()
            bias = ((grads.mean(0) - golden).norm() / golden.norm()).item()
            print(f"{name:<11} {n_t:>4} {std:>19.3e} {bias:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
