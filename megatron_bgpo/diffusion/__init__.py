"""Masked-diffusion core: forward masking process, Monte-Carlo ELBO terms, and the LLaDA sampler.

Modules: ``masking`` (MC items: t or l, masks, weights, seeds), ``elbo`` (masked canvases, per-item
ELBO terms), ``sampler`` (generation under TP/PP, fast-decoding switches), ``schedule`` (block plan,
transfer schedule), ``vocab`` (vocab-shard reductions), ``rng`` (counter-based hash RNG), ``toy``
(a tiny plain-torch denoiser for tests and benchmarks).
"""

from megatron_bgpo.diffusion.elbo import MaskedBatch, build_masked_batch, elbo_terms, mc_mean
from megatron_bgpo.diffusion.masking import (
    MaskingSpec,
    MaskSample,
    counted_positions,
    item_index,
    item_seeds,
    mc_seeds,
    sample_masks,
)
from megatron_bgpo.diffusion.sampler import (
    Denoiser,
    PipelineComm,
    PrefixCacheDenoiser,
    Prompts,
    SampleOutput,
    SamplerConfig,
    generate,
    trimmed_lengths,
)
from megatron_bgpo.diffusion.vocab import VocabShard, token_logprobs

__all__ = [
    "Denoiser",
    "MaskSample",
    "MaskedBatch",
    "MaskingSpec",
    "PipelineComm",
    "PrefixCacheDenoiser",
    "Prompts",
    "SampleOutput",
    "SamplerConfig",
    "VocabShard",
    "build_masked_batch",
    "counted_positions",
    "elbo_terms",
    "generate",
    "item_index",
    "item_seeds",
    "mc_mean",
    "mc_seeds",
    "sample_masks",
    "token_logprobs",
    "trimmed_lengths",
]
