"""GPU only: the Transformer-Engine layer spec gives the same logits as the local spec and the
reference forward (skipped without CUDA and Transformer Engine)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.models.llada.layer_spec import te_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _te_rank(rank: int, world: int) -> dict:
    from megatron_bgpo.checkpointing.llada_mapping import dict_reader, load_hf_into_model
    from megatron_bgpo.models.llada import build_model_chunks, get_preset, llada_forward
    from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, initialize_model_parallel, set_seed

    init_distributed()
    parallel = ParallelConfig(1, 1)
    pgs = initialize_model_parallel(parallel)
    set_seed(0)
    cfg = get_preset("tiny-gqa")
    weights = random_hf_weights(cfg, seed=3)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, :4] = False
    out = {}
    for use_te in (False, True):
        (model,) = build_model_chunks(cfg, parallel, pgs, use_te=use_te)
        load_hf_into_model(model, cfg, dict_reader({k: v.cuda() for k, v in weights.items()}), 0, 1)
        with torch.no_grad():
            out[use_te] = llada_forward(model, tokens.cuda(), mask.cuda()).float().cpu()
    ref = reference_forward(weights, cfg, tokens, mask)
    scale = ref.abs().max()
    return {
        "te_vs_local": ((out[True] - out[False])[mask].abs().max() / scale).item(),
        "te_vs_reference": ((out[True] - ref)[mask].abs().max() / scale).item(),
    }


@pytest.mark.skipif(not te_available(), reason="needs Transformer Engine")
def test_te_spec_matches_local_spec_and_reference() -> None:
    from tests.distributed import run_distributed

    (r,) = run_distributed(_te_rank, 1)
    assert r["te_vs_local"] < 1e-3 and r["te_vs_reference"] < 1e-3, r
