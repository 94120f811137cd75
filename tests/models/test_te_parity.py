"""GPU only: the Transformer-Engine layer spec gives the same logits and gradients as the local spec and
the reference forward, including a left-padded row (skipped without CUDA and Transformer Engine)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.models.llada.layer_spec import te_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _te_rank(rank: int, world: int) -> dict:
    """Logits and gradients of the TE spec vs the local spec (fp32) and the reference forward; the TE
    spec in bf16 vs the fp32 reference."""
    from megatron_bgpo.checkpointing.llada_mapping import dict_reader, iter_stage_tensors, load_hf_into_model
    from megatron_bgpo.models.llada import build_model_chunks, get_preset, llada_forward
    from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, initialize_model_parallel, set_seed

    init_distributed()
    parallel = ParallelConfig(1, 1)
    pgs = initialize_model_parallel(parallel)
    set_seed(0)
    cfg = get_preset("tiny-gqa")
    weights = random_hf_weights(cfg, seed=3)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, :4] = False  # a left-padded row
    targets = torch.randint(0, cfg.vocab_size, tokens.shape, generator=gen)
    out, grads = {}, {}
    for name, use_te, dtype in (("local", False, torch.float32), ("te", True, torch.float32),
                                ("te_bf16", True, torch.bfloat16)):  # fmt: skip
        (model,) = build_model_chunks(cfg, parallel, pgs, use_te=use_te, params_dtype=dtype)
        load_hf_into_model(model, cfg, dict_reader({k: v.cuda() for k, v in weights.items()}), 0, 1)
        logits = llada_forward(model, tokens.cuda(), mask.cuda()).float()
        lp = torch.log_softmax(logits, -1).gather(-1, targets.cuda()[..., None])[..., 0]
        (lp * mask.cuda()).sum().backward()
        out[name] = logits.detach().cpu()
        params = dict(model.named_parameters())
        grads[name] = {
            (m.megatron, layer): params[n].grad.float().cpu() for n, m, layer in iter_stage_tensors(model)
        }
    ref = reference_forward(weights, cfg, tokens, mask)
    scale = ref.abs().max()

    def rel(a, b) -> float:
        return ((a - b)[mask].abs().max() / scale).item()

    grad_rel = max(
        ((grads["te"][k] - g).abs().max() / g.abs().max().clamp_min(1e-30)).item()
        for k, g in grads["local"].items()
    )
    return {
        "te_vs_local": rel(out["te"], out["local"]),
        "te_vs_reference": rel(out["te"], ref),
        "te_grads_vs_local": grad_rel,
        "te_bf16_vs_reference": rel(out["te_bf16"], ref),
    }


@pytest.mark.skipif(not te_available(), reason="needs Transformer Engine")
def test_te_spec_matches_local_spec_and_reference() -> None:
    """fp32: TE = local = reference within 1e-3 (logits, relative to the largest logit; gradients
    relative to each tensor's largest entry). bf16 TE: within 3e-2 of the fp32 reference. Run under
    both attention backends by benchmarks/gpu_check.sh (NVTE_FUSED_ATTN / NVTE_FLASH_ATTN)."""
    from tests.distributed import run_distributed

    (r,) = run_distributed(_te_rank, 1)
    print(r)
    assert r["te_vs_local"] < 1e-3 and r["te_vs_reference"] < 1e-3, r
    assert r["te_grads_vs_local"] < 1e-3, r
    assert r["te_bf16_vs_reference"] < 3e-2, r
