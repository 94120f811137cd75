"""Activation recomputation (``--recompute-granularity`` ...) and the log-prob chunk size change memory,
not gradients: one BGPO update's gradient with full / selective recomputation and with several
``--logprob-chunk-size`` values equals the plain run's (same weights, same masks)."""

from __future__ import annotations

import torch

from tests.distributed import run_distributed

SETTINGS = {
    "plain": ({}, 1024),
    "full_uniform": (
        {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
        1024,
    ),
    "full_block": (
        {"recompute_granularity": "full", "recompute_method": "block", "recompute_num_layers": 3},
        1024,
    ),
    "selective": ({"recompute_granularity": "selective"}, 1024),
    "chunk_3": ({}, 3),
    "chunk_all": ({}, 0),
}


def _grads_rank(rank: int, world: int) -> dict[str, list[torch.Tensor]]:
    from megatron_bgpo.diffusion.masking import MaskingSpec
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
    from megatron_bgpo.rl.objectives import ObjectiveConfig, get_objective
    from megatron_bgpo.rl.rollout import RolloutBatch
    from megatron_bgpo.training.policy import Policy

    parallel = ParallelConfig(1, 1)
    groups = parallel_groups(parallel, init_distributed())
    cfg = get_preset("tiny")
    gen = torch.Generator().manual_seed(0)
    batch = RolloutBatch(
        prompt_ids=torch.randint(0, 200, (2, 6), generator=gen),
        prompt_mask=torch.ones(2, 6, dtype=torch.bool),
        response_ids=torch.randint(0, 200, (2, 10), generator=gen),
        advantages=torch.tensor([1.0, -0.5], dtype=torch.float64),
        response_uid=torch.arange(2),
        loss_weight=torch.ones(2, dtype=torch.float64),
    )
    objective = get_objective("bgpo")
    packing = PackingConfig(3, 2, MaskingSpec(eos_id=cfg.eos_token_id), mask_id=cfg.mask_token_id)
    out = {}
    for name, (overrides, chunk_rows) in SETTINGS.items():
        set_seed(0)
        policy = Policy.build(cfg, parallel, groups, torch.float32, ddp=True, transformer_overrides=overrides)
        policy.logprob_chunk_rows = chunk_rows
        policy.gradients(build_microbatches(batch, objective, packing), objective, ObjectiveConfig())
        out[name] = [p.main_grad.clone() for p in policy.model[0].parameters()]
    return out


def test_recompute_and_logprob_chunks_leave_gradients_unchanged() -> None:
    (grads,) = run_distributed(_grads_rank, 1)
    plain = grads["plain"]
    assert max(float(g.abs().max()) for g in plain) > 0
    for name, got in grads.items():
        for a, b in zip(got, plain, strict=True):
            # fp32 sums in another order: errors scale with the tensor's largest entry, not each element's
            scale = float(b.abs().max())
            err = float((a - b).abs().max())
            assert err <= 1e-5 * scale, f"{name}: max |diff| {err:.3g} > 1e-5 x max |grad| {scale:.3g}"
