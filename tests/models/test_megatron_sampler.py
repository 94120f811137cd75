"""The diffusion sampler on the Megatron model: same seed, same tokens under TP1PP1, TP2 and PP2,
and greedy decoding equals the sampler driven by the plain-PyTorch reference forward."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.models.llada.reference import reference_forward
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank

PROMPTS = [[5, 17, 42, 9, 100], [7, 3], [60, 61, 62]]


def _sampler_cfg(cfg, temperature: float) -> SamplerConfig:
    """8 tokens in 2 blocks of 4, 8 steps, with ``cfg``'s (an LLaDAConfig's) mask and EOS ids."""
    return SamplerConfig(
        gen_length=8,
        steps=8,
        block_length=4,
        temperature=temperature,
        mask_id=cfg.mask_token_id,
        eos_id=cfg.eos_token_id,
    )


def _generate_rank(
    rank: int, world: int, tp: int, pp: int, temperature: float, preset: str = "tiny", prompts=PROMPTS
) -> dict:
    s = setup_rank(tp, pp, preset=preset)
    denoiser = MegatronDenoiser(s.chunks, s.cfg)
    prompts = Prompts.from_lists(prompts, pad_id=s.cfg.pad_token_id).repeat_interleave(2)
    out = generate(
        denoiser,
        prompts,
        _sampler_cfg(s.cfg, temperature),
        seed=11,
        vocab=denoiser.vocab_shard(),
        pipeline=denoiser.pipeline_comm(),
    )
    result = {"tokens": out.tokens, "trace": out.trace}
    if rank == 0 and tp == 1 and pp == 1:
        # Same sampler over the independent reference forward (full vocab, single process).
        def ref_denoiser(tokens, attention_mask, position_ids):
            return reference_forward(s.weights, s.cfg, tokens, attention_mask)

        sampler = _sampler_cfg(s.cfg, temperature)
        result["reference"] = generate(ref_denoiser, prompts, sampler, seed=11).tokens
    return result


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_same_seed_same_tokens_across_layouts(temperature: float) -> None:
    (base,) = run_distributed(_generate_rank, 1, 1, 1, temperature)
    assert torch.equal(base["tokens"], base["reference"])
    assert (base["tokens"] != 255).all(), "every position must be decided (no MASK left)"
    for tp, pp in [(2, 1), (1, 2)]:
        for r in run_distributed(_generate_rank, tp * pp, tp, pp, temperature):
            assert torch.equal(r["tokens"], base["tokens"]), (tp, pp)
            assert torch.equal(r["trace"], base["trace"]), (tp, pp)
