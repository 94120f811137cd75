"""Fast-decoding switches of the sampler on the toy model: row compaction (exact), early exit (exact when
the model would decode EOS there anyway), the dual KV cache (exact where its cached K/V cannot go stale).
"""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate
from megatron_bgpo.diffusion.toy import ToyDenoiser

V, MASK, EOS, PAD = 13, 12, 11, 0
GEN = 16


@pytest.fixture(scope="module")
def model() -> ToyDenoiser:
    return ToyDenoiser(V, d_model=32, n_layers=2, seed=1).eval()


def prompts() -> Prompts:
    return Prompts.from_lists([[3, 4, 5, 6, 7], [8, 2], [1, 9, 10], [4, 4, 4, 4]], pad_id=PAD)


def cfg(**kw) -> SamplerConfig:
    d = dict(gen_length=GEN, steps=8, block_length=4, mask_id=MASK, eos_id=EOS)
    return SamplerConfig(**(d | kw))


class EosAfterPrompt:
    """The toy model with EOS forced (a large logit) at generated positions >= the row's prompt length,
    so every row's answer is followed by EOS blocks whatever the batch composition. Keeps the toy's
    cache hooks (the forced logit does not touch K/V)."""

    accepts_logits_range = True

    def __init__(self, model: ToyDenoiser, plen: int) -> None:
        self.model, self.plen, self.rows_seen = model, plen, []

    def _force(self, logits, attention_mask, lo):
        eos_from = attention_mask[:, : self.plen].sum(1)  # real prompt tokens of each row
        gen_pos = torch.arange(lo, lo + logits.shape[1]) - self.plen
        logits = logits.clone()
        logits[..., EOS] += 20.0 * (gen_pos[None, :] >= eos_from[:, None])
        return logits

    def __call__(self, t, a, p, logits_range=None):
        self.rows_seen.append(t.shape[0])
        return self._force(self.model(t, a, p, logits_range), a, logits_range[0])

    def prefill(self, t, a, p, prefix_length, logits_range=None, **kw):
        self.rows_seen.append(t.shape[0])
        logits, cache = self.model.prefill(t, a, p, prefix_length, logits_range, **kw)
        return self._force(logits, a, logits_range[0]), cache

    def extend(self, cache, t, a, p, logits_range=None):
        self.rows_seen.append(t.shape[0])
        return self._force(self.model.extend(cache, t, a, p, logits_range), a, logits_range[0])

    def cache_rows(self, cache, index):
        return self.model.cache_rows(cache, index)


COMPACT_CASES = {
    "threshold": dict(threshold=0.3),
    "threshold_cfg_temp": dict(threshold=0.3, cfg_scale=0.5, temperature=0.8),
    "fill_after_eos": dict(fill_after_eos=True, threshold=0.5),
    "early_exit": dict(early_exit=True),
    "prefix_cache": dict(prefix_cache=True, threshold=0.3),
    "dual_cache_cfg": dict(dual_cache=True, threshold=0.3, cfg_scale=0.5),
    "random_remask": dict(remasking="random", threshold=0.5, early_exit=True),
}


@pytest.mark.parametrize("case", list(COMPACT_CASES))
def test_compact_rows_same_tokens(model, case):
    pr = prompts()
    den = EosAfterPrompt(model, pr.input_ids.shape[1])
    kw = COMPACT_CASES[case]
    full = generate(den, pr, cfg(**kw), seed=4)
    den.rows_seen.clear()
    comp = generate(den, pr, cfg(**kw, compact_rows=True), seed=4)
    assert torch.equal(comp.tokens, full.tokens) and torch.equal(comp.trace, full.trace)
    assert comp.nfe == full.nfe and full.row_calls == full.nfe * 4
    mult = 2 if kw.get("cfg_scale") else 1
    assert sum(den.rows_seen) == comp.row_calls * mult  # the denoiser really ran fewer rows
    assert comp.row_calls < full.row_calls  # some row finishes a block early / exits in every case


def test_early_exit_exact_when_the_model_pads_with_eos(model):
    pr = prompts()
    den = EosAfterPrompt(model, pr.input_ids.shape[1])
    exact = generate(den, pr, cfg(), seed=2)
    lengths = pr.attention_mask.sum(1)
    assert (exact.tokens[:, :][torch.arange(GEN)[None, :] >= lengths[:, None]] == EOS).all()
    fast = generate(den, pr, cfg(early_exit=True, compact_rows=True), seed=2)
    assert torch.equal(fast.tokens, exact.tokens)
    # EOS from 5, 2, 3, 4: rows 1-3 exit after block 1 (positions 4-7), row 0 after block 2; block 3
    # gets no call: 2 steps x 4 rows in blocks 0 and 1, 2 steps x 1 row in block 2
    assert fast.nfe == 6 and fast.row_calls == 2 * 4 + 2 * 4 + 2 * 1
    # without compaction the exited rows still ride along in the calls
    ride = generate(den, pr, cfg(early_exit=True), seed=2)
    assert torch.equal(ride.tokens, exact.tokens) and ride.row_calls == ride.nfe * 4


def test_early_exit_needs_a_whole_eos_block(model):
    """A row whose block is EOS only in part keeps decoding (fill_after_eos would stop it)."""
    pr = Prompts.from_lists([[1, 2, 3, 4, 5, 6]], pad_id=PAD)  # EOS from generated position 6
    den = EosAfterPrompt(model, 6)
    exact = generate(den, pr, cfg(), seed=0)
    fast = generate(den, pr, cfg(early_exit=True, compact_rows=True), seed=0)
    assert torch.equal(fast.tokens, exact.tokens)
    assert fast.nfe == 6  # blocks 0, 1 (EOS from 6: not all EOS), 2 (all EOS) -> exit before block 3


def test_dual_cache_hook_exact_on_an_unchanged_canvas(model):
    pr = prompts()
    p = pr.input_ids.shape[1]
    x = torch.cat([pr.input_ids, torch.randint(1, 10, (4, GEN))], 1)
    am = torch.cat([pr.attention_mask, torch.ones(4, GEN, dtype=torch.bool)], 1)
    pos = torch.cat([pr.position_ids, pr.position_ids[:, -1:] + 1 + torch.arange(GEN)], 1)
    lo, hi = p + 4, p + 8
    full, cache = model.prefill(x, am, pos, lo, suffix_start=hi)
    ext = model.extend(cache, x[:, lo:hi], am, pos[:, lo:hi])
    torch.testing.assert_close(ext, full[:, lo:hi], rtol=1e-5, atol=1e-5)
    ranged = model.extend(cache, x[:, lo:hi], am, pos[:, lo:hi], logits_range=(lo + 1, hi))
    torch.testing.assert_close(ranged, ext[:, 1:])
    sub = model.cache_rows(cache, torch.tensor([2, 0]))
    torch.testing.assert_close(
        model.extend(sub, x[[2, 0], lo:hi], am[[2, 0]], pos[[2, 0], lo:hi]), ext[[2, 0]]
    )


@pytest.mark.parametrize("kw", [dict(), dict(threshold=0.3, temperature=0.7, cfg_scale=0.5)])
def test_dual_cache_one_block_is_prefix_cache(model, kw):
    """block_length = gen_length: the suffix is empty, so the dual cache is the prefix cache."""
    pr = prompts()
    c = cfg(block_length=GEN, steps=8, **kw)
    pre = generate(model, pr, c.with_(prefix_cache=True), seed=3)
    dual = generate(model, pr, c.with_(dual_cache=True), seed=3)
    assert torch.equal(dual.tokens, pre.tokens) and dual.nfe == pre.nfe


@pytest.mark.parametrize("kw", [dict(), dict(threshold=0.3, temperature=0.7)])
def test_dual_cache_exact_for_one_layer(kw):
    """One layer: a position's K/V depend on its own token only and the prefix and suffix tokens do not
    change within a block, so the dual cache reproduces the uncached sampler (and the 2-layer toy does
    not, which shows the test can fail)."""
    pr = prompts()
    one = ToyDenoiser(V, d_model=32, n_layers=1, seed=2).eval()
    assert torch.equal(
        generate(one, pr, cfg(dual_cache=True, **kw), seed=1).tokens,
        generate(one, pr, cfg(**kw), seed=1).tokens,
    )


def test_dual_cache_is_approximate_for_deeper_models():
    pr = Prompts.from_lists([[1, 2, 3, 4, 5, 6, 7, 8]] * 8, pad_id=PAD)
    deep = ToyDenoiser(V, d_model=32, n_layers=4, seed=5).eval()
    c = cfg(gen_length=32, steps=32, block_length=8, temperature=1.0)
    plain = generate(deep, pr, c, seed=0, row_ids=torch.arange(8))
    dual = generate(deep, pr, c.with_(dual_cache=True), seed=0, row_ids=torch.arange(8))
    assert not torch.equal(dual.tokens, plain.tokens)


def test_fast_flag_errors(model):
    with pytest.raises(ValueError, match="exclusive"):
        cfg(prefix_cache=True, dual_cache=True)
    with pytest.raises(TypeError, match="dual_cache"):
        generate(lambda t, a, p: model(t, a, p), prompts(), cfg(dual_cache=True))
