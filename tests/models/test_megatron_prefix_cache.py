"""The Megatron denoiser's sampler hooks: ``logits_range``, the prefix and dual KV caches (prefill/extend,
``suffix_start``) and ``cache_rows``.

Numerics: ranged logits, prefill and extend (over a prefix, or a prefix and suffix, from the same
canvas; also after keeping a subset of the cache's rows) equal slices of the normal forward under TP1,
TP2, PP2 and PP2 x VPP2 with micro-batches, left-padded rows of different lengths and GQA. Semantics:
extend really reuses the stale prefix K/V (exact only for a 1-layer model, whose K/V depend on the token
alone). End to end: ``generate(prefix_cache=True)`` gives the same tokens under every layout, and for a
1-layer model the same tokens as no cache and as the reference forward; the dual cache is exact for one
layer too, and row compaction never changes the tokens.
"""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.models.llada.reference import reference_forward
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank, toy_batch

SEQ, PREFIX, SUFFIX = 12, 7, 10
PROMPTS = [[5, 17, 42, 9, 100], [7, 3], [60, 61, 62]]


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def cache_checks(denoiser: MegatronDenoiser, tokens: torch.Tensor, mask: torch.Tensor) -> dict | None:
    """Max abs differences of every hook against the matching slice of the plain forward (last stage)."""
    pos = Prompts.positions_from_mask(mask)
    full = denoiser(tokens, mask, pos)
    outs = {
        "range": (denoiser(tokens, mask, pos, logits_range=(5, 9)), (5, 9)),
        "prefill0": (denoiser.prefill(tokens, mask, pos, 0)[0], (0, SEQ)),
    }
    logits, cache = denoiser.prefill(tokens, mask, pos, PREFIX, logits_range=(PREFIX, SEQ))
    outs["prefill_range"] = (logits, (PREFIX, SEQ))
    outs["extend"] = (denoiser.extend(cache, tokens[:, PREFIX:], mask, pos[:, PREFIX:]), (PREFIX, SEQ))
    ranged = denoiser.extend(cache, tokens[:, PREFIX:], mask, pos[:, PREFIX:], logits_range=(8, 10))
    outs["extend_range"] = (ranged, (8, 10))
    _, empty = denoiser.prefill(tokens, mask, pos, 0)
    outs["extend_from_0"] = (denoiser.extend(empty, tokens, mask, pos), (0, SEQ))
    _, dual = denoiser.prefill(tokens, mask, pos, PREFIX, suffix_start=SUFFIX)
    block = tokens[:, PREFIX:SUFFIX], mask, pos[:, PREFIX:SUFFIX]
    outs["dual"] = (denoiser.extend(dual, *block), (PREFIX, SUFFIX))
    outs["dual_range"] = (denoiser.extend(dual, *block, logits_range=(8, 10)), (8, 10))
    rows = torch.tensor([3, 0, 2])
    kept = denoiser.cache_rows(dual, rows)
    sub = tokens[rows, PREFIX:SUFFIX], mask[rows], pos[rows, PREFIX:SUFFIX]
    kept_out = denoiser.extend(kept, *sub)
    prefix_kept = denoiser.extend(
        denoiser.cache_rows(cache, rows), tokens[rows, PREFIX:], mask[rows], pos[rows, PREFIX:]
    )
    if full is None:
        assert all(out is None for out, _ in outs.values()), "non-last stages must return None"
        assert kept_out is None and prefix_kept is None
        return None
    return {k: _diff(out, full[:, a:b]) for k, (out, (a, b)) in outs.items()} | {
        "scale": full.abs().max().item(),
        "dual_rows": _diff(kept_out, full[rows, PREFIX:SUFFIX]),
        "prefix_rows": _diff(prefix_kept, full[rows, PREFIX:]),
    }


def _numerics_rank(
    rank: int, world: int, tp: int, pp: int, vpp: int | None, max_rows: int | None
) -> dict | None:
    s = setup_rank(tp, pp, preset="tiny-gqa", vpp=vpp)
    tokens, mask, _ = toy_batch(s.cfg, 4, SEQ, seed=5, pad_rows=3)  # rows padded by 1, 2, 3, 0
    return cache_checks(MegatronDenoiser(s.chunks, s.cfg, max_rows=max_rows), tokens, mask)


@pytest.mark.parametrize(
    "tp,pp,vpp,max_rows",
    [(1, 1, None, None), (1, 1, None, 3), (2, 1, None, None), (1, 2, None, None), (1, 2, 2, 2)],
)
def test_hooks_match_full_forward(tp: int, pp: int, vpp: int | None, max_rows: int | None) -> None:
    results = run_distributed(_numerics_rank, tp * pp, tp, pp, vpp, max_rows)
    last = [r for r in results if r is not None]
    assert len(last) == tp, "exactly the last stage's TP ranks return logits"
    for r in last:
        assert r["scale"] > 0.1
        assert max(r["range"], r["prefill0"], r["prefill_range"]) < 1e-6, r  # same kernels
        assert max(r["extend"], r["extend_range"], r["extend_from_0"]) < 1e-5, r  # SDPA vs local kernel
        assert max(r["dual"], r["dual_range"], r["dual_rows"], r["prefix_rows"]) < 1e-5, r


def _stale_rank(rank: int, world: int, tp: int, n_layers: int) -> dict:
    s = setup_rank(tp, 1, preset="tiny-gqa", cfg_changes={"n_layers": n_layers})
    den = MegatronDenoiser(s.chunks, s.cfg)
    tokens, mask, _ = toy_batch(s.cfg, 3, SEQ, seed=6, pad_rows=2)
    changed = tokens.clone()
    changed[:, PREFIX:] = torch.randint(
        0, s.cfg.vocab_size, (3, SEQ - PREFIX), generator=torch.Generator().manual_seed(1)
    )
    pos = Prompts.positions_from_mask(mask)
    _, cache = den.prefill(tokens, mask, pos, PREFIX)
    ext = den.extend(cache, changed[:, PREFIX:], mask, pos[:, PREFIX:])
    return {"diff": _diff(ext, den(changed, mask, pos)[:, PREFIX:])}


@pytest.mark.parametrize("tp", [1, 2])
def test_extend_reuses_the_stale_prefix(tp: int) -> None:
    one = run_distributed(_stale_rank, tp, tp, 1)
    assert all(r["diff"] < 1e-5 for r in one), one  # 1 layer: prefix K/V depend on the prefix alone
    four = run_distributed(_stale_rank, tp, tp, 4)
    assert all(r["diff"] > 1e-3 for r in four), four  # deeper: the prefix K/V saw the old suffix


def _sampler_cfg(s, **kw) -> SamplerConfig:
    base = dict(gen_length=8, steps=8, block_length=4, mask_id=s.cfg.mask_token_id, eos_id=s.cfg.eos_token_id)
    return SamplerConfig(**(base | kw))


def _generate_rank(rank: int, world: int, tp: int, pp: int, n_layers: int, kw: dict) -> dict:
    s = setup_rank(tp, pp, preset="tiny", cfg_changes={"n_layers": n_layers})
    den = MegatronDenoiser(s.chunks, s.cfg)
    prompts = Prompts.from_lists(PROMPTS, pad_id=s.cfg.pad_token_id).repeat_interleave(2)
    common = dict(seed=11, vocab=den.vocab_shard(), pipeline=den.pipeline_comm())
    cached = generate(den, prompts, _sampler_cfg(s, prefix_cache=True, **kw), **common)
    result = {"tokens": cached.tokens, "trace": cached.trace, "nfe": cached.nfe}
    if n_layers == 1:
        result["plain"] = generate(den, prompts, _sampler_cfg(s, **kw), **common).tokens
        if rank == 0 and tp == pp == 1:

            def ref(tokens, attention_mask, position_ids):
                return reference_forward(s.weights, s.cfg, tokens, attention_mask)

            result["reference"] = generate(ref, prompts, _sampler_cfg(s, **kw), seed=11).tokens
    return result


GEN_CASES = [dict(), dict(temperature=0.8, cfg_scale=0.5, threshold=0.5)]


@pytest.mark.parametrize("kw", GEN_CASES, ids=["greedy", "temp_cfg_threshold"])
def test_prefix_cache_same_tokens_across_layouts(kw: dict) -> None:
    (base,) = run_distributed(_generate_rank, 1, 1, 1, 4, kw)
    assert (base["tokens"] != 255).all(), "every position must be decided (no MASK left)"
    for tp, pp in [(2, 1), (1, 2)]:
        for r in run_distributed(_generate_rank, tp * pp, tp, pp, 4, kw):
            assert torch.equal(r["tokens"], base["tokens"]), (tp, pp)
            assert torch.equal(r["trace"], base["trace"]) and r["nfe"] == base["nfe"], (tp, pp)


@pytest.mark.parametrize("kw", GEN_CASES, ids=["greedy", "temp_cfg_threshold"])
def test_prefix_cache_is_exact_for_one_layer(kw: dict) -> None:
    """With one layer the cached prefix K/V never go stale, so cache == no cache == reference."""
    (base,) = run_distributed(_generate_rank, 1, 1, 1, 1, kw)
    assert torch.equal(base["tokens"], base["plain"]) and torch.equal(base["tokens"], base["reference"])
    for r in run_distributed(_generate_rank, 2, 2, 1, 1, kw):
        assert torch.equal(r["tokens"], base["tokens"]) and torch.equal(r["plain"], base["tokens"])


def _fast_rank(rank: int, world: int, tp: int, pp: int, n_layers: int, kw: dict) -> dict:
    s = setup_rank(tp, pp, preset="tiny", cfg_changes={"n_layers": n_layers})
    den = MegatronDenoiser(s.chunks, s.cfg, max_rows=4)
    prompts = Prompts.from_lists(PROMPTS, pad_id=s.cfg.pad_token_id).repeat_interleave(2)
    common = dict(seed=11, vocab=den.vocab_shard(), pipeline=den.pipeline_comm())
    out = {
        name: generate(den, prompts, _sampler_cfg(s, **kw, **flags), **common)
        for name, flags in {
            "plain": {},
            "dual": dict(dual_cache=True),
            "dual_compact": dict(dual_cache=True, compact_rows=True),
            "prefix_compact": dict(prefix_cache=True, compact_rows=True),
            "prefix": dict(prefix_cache=True),
        }.items()
    }
    return {k: (o.tokens, o.row_calls) for k, o in out.items()}


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (1, 2)])
def test_dual_cache_and_compaction(tp: int, pp: int) -> None:
    """1 layer: the dual cache is exact (prefix and suffix tokens do not change within a block), with
    and without row compaction (cache rows re-split over micro-batches of 4 as rows drop out)."""
    kw = dict(threshold=0.004, temperature=0.8)  # ~1/V: the random model's confidences straddle it
    for r in run_distributed(_fast_rank, tp * pp, tp, pp, 1, kw) if pp == 1 else []:  # PP2: >= 2 layers
        assert torch.equal(r["dual"][0], r["plain"][0]) and torch.equal(r["dual_compact"][0], r["plain"][0])
        assert torch.equal(r["prefix_compact"][0], r["plain"][0])
        assert r["dual_compact"][1] < r["dual"][1], "threshold decoding finishes some rows' blocks early"
    # 2 layers: approximate, but compaction still changes nothing
    for r in run_distributed(_fast_rank, tp * pp, tp, pp, 2, kw):
        assert torch.equal(r["dual_compact"][0], r["dual"][0])
        assert torch.equal(r["prefix_compact"][0], r["prefix"][0])
        assert r["dual_compact"][1] < r["dual"][1]


# ---------------------------------------------------------------------------------------------
# GPU only: the same checks with the Transformer-Engine layer spec (not run on the CPU machine).


def _te_rank(rank: int, world: int) -> dict | None:
    s = setup_rank(1, 1, preset="tiny-gqa", use_te=True)
    tokens, mask, _ = toy_batch(s.cfg, 4, SEQ, seed=5, pad_rows=3)
    return cache_checks(MegatronDenoiser(s.chunks, s.cfg), tokens.cuda(), mask.cuda())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hooks_match_full_forward_te() -> None:
    from megatron_bgpo.models.llada.layer_spec import te_available

    if not te_available():
        pytest.skip("needs Transformer Engine")
    (r,) = run_distributed(_te_rank, 1)
    tol = 1e-4 * r["scale"]  # TE's fused attention vs SDPA in extend
    assert max(r["range"], r["prefill0"], r["prefill_range"]) < 1e-6 * r["scale"], r
    assert max(r["extend"], r["extend_range"], r["extend_from_0"]) < tol, r
