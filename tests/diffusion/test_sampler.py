"""Single-process sampler tests: reference equality, schedule/trace, CFG, EOS, fast decoding."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate, trimmed_lengths
from megatron_bgpo.diffusion.schedule import num_transfer_tokens
from megatron_bgpo.diffusion.toy import ToyDenoiser
from tests.diffusion.reference import llada_generate

V, MASK, EOS, PAD = 13, 12, 11, 0


@pytest.fixture(scope="module")
def model() -> ToyDenoiser:
    return ToyDenoiser(V, d_model=32, n_layers=2, seed=1).eval()


def prompts(device=None) -> Prompts:
    return Prompts.from_lists([[3, 4, 5, 6, 7], [8, 2], [1, 9, 10]], pad_id=PAD, device=device)


def base_cfg(**kw) -> SamplerConfig:
    d = dict(gen_length=12, steps=6, block_length=4, mask_id=MASK, eos_id=EOS)
    d.update(kw)
    return SamplerConfig(**d)


def reference(model, pr: Prompts, cfg: SamplerConfig, seed: int = 0) -> torch.Tensor:
    return llada_generate(
        model,
        pr.input_ids,
        pr.attention_mask,
        pr.position_ids,
        steps=cfg.steps,
        gen_length=cfg.gen_length,
        block_length=cfg.block_length,
        temperature=cfg.temperature,
        cfg_scale=cfg.cfg_scale,
        remasking=cfg.remasking,
        mask_id=MASK,
        eos_id=EOS,
        logits_eos_inf=cfg.suppress_eos,
        seed=seed,
    )


CASES = {
    "greedy_semi_ar": {},
    "pure_diffusion": dict(gen_length=8, steps=8, block_length=8),
    "steps_gt_block": dict(gen_length=8, steps=12, block_length=4),  # trailing 0-token steps
    "odd_schedule": dict(gen_length=10, steps=6, block_length=5),
    "cfg": dict(cfg_scale=1.5),
    "eos_inf": dict(suppress_eos=True),
    "random_remask": dict(remasking="random"),
    "temperature": dict(temperature=0.8),
    "temperature_cfg_random": dict(temperature=1.3, cfg_scale=0.5, remasking="random"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_reference(model, case):
    cfg = base_cfg(**CASES[case])
    pr = prompts()
    out = generate(model, pr, cfg, seed=5)
    ref = reference(model, pr, cfg, seed=5)
    assert torch.equal(out.tokens, ref)
    assert (out.tokens != MASK).all()
    if cfg.suppress_eos:
        assert (out.tokens != EOS).all()


def test_trace_follows_schedule(model):
    cfg = base_cfg(gen_length=12, steps=9, block_length=4)  # 3 blocks x 3 steps: 2, 1, 1 tokens
    out = generate(model, prompts(), cfg)
    assert out.nfe == 9
    per_step = torch.stack([(out.trace == s).sum(1) for s in range(9)], 1)
    expected = num_transfer_tokens(torch.full((3,), 4), 3).repeat(1, 3)
    assert torch.equal(per_step, expected)
    for b in range(3):  # block b is decided during its own steps
        tr = out.trace[:, 4 * b : 4 * b + 4]
        assert ((tr >= 3 * b) & (tr < 3 * b + 3)).all()


def test_one_token_blocks_decode_left_to_right(model):
    """JustGRPO's rollout order (block_length 1, steps = gen_length): step s commits token s, and the
    tokens equal LLaDA generate.py with the same arguments (sampled, so order is all that is fixed)."""
    cfg = base_cfg(gen_length=8, steps=8, block_length=1, temperature=1.0)
    out = generate(model, prompts(), cfg, seed=7)
    assert torch.equal(out.trace, torch.arange(8).expand(3, -1))
    assert torch.equal(out.tokens, reference(model, prompts(), cfg, seed=7))


def test_row_independent_of_batch(model):
    cfg = base_cfg(temperature=0.9)
    pr = prompts()
    full = generate(model, pr, cfg, seed=3)
    for i in range(3):
        one = pr.take([i])
        alone = generate(model, one, cfg, seed=3, row_ids=torch.tensor([i]))
        assert torch.equal(alone.tokens[0], full.tokens[i])


def test_group_samples_differ_and_repeat(model):
    cfg = base_cfg(temperature=1.0)
    pr = prompts().repeat_interleave(4)
    a = generate(model, pr, cfg, seed=11)
    b = generate(model, pr, cfg, seed=11)
    c = generate(model, pr, cfg, seed=12)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.trace, b.trace)
    assert not torch.equal(a.tokens, c.tokens)
    assert len({tuple(r.tolist()) for r in a.tokens[:4]}) > 1  # G samples of one prompt differ


class Spy:
    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, t, a, p):
        self.batches.append(t.shape[0])
        return self.model(t, a, p)


def test_cfg_zero_is_no_cfg(model):
    pr = prompts()
    spy = Spy(model)
    out0 = generate(spy, pr, base_cfg(cfg_scale=0.0))
    assert spy.batches == [3] * out0.nfe  # no unconditional pass
    assert torch.equal(out0.tokens, reference(model, pr, base_cfg()))
    spy.batches.clear()
    tiny = generate(spy, pr, base_cfg(cfg_scale=1e-12))  # guided path, guidance ~ 0
    assert spy.batches == [6] * tiny.nfe
    assert torch.equal(tiny.tokens, out0.tokens)


class Scripted:
    """Logits that favour token ``want[row, pos]`` (EOS from ``eos_from[row]`` on) with confidence
    decreasing along the canvas, so commit order is left to right."""

    def __init__(self, gen_length: int, eos_from: list[int], plen: int, strength: float = 8.0):
        self.g, self.eos_from, self.plen, self.strength = gen_length, eos_from, plen, strength

    def __call__(self, t, a, p):
        bsz, tlen = t.shape
        logits = torch.zeros(bsz, tlen, V)
        for r in range(bsz):
            for i in range(self.g):
                tok = EOS if i >= self.eos_from[r % len(self.eos_from)] else 1 + (i % 9)
                logits[r, self.plen + i, tok] = self.strength - 0.01 * i
        return logits


def test_eos_lengths_and_fill():
    pr = Prompts.from_lists([[1, 2], [3, 4], [5, 6]], pad_id=PAD)
    eos_from = [5, 12, 0]
    den = Scripted(12, eos_from, 2)
    out = generate(den, pr, base_cfg())
    assert out.lengths.tolist() == [5, 12, 0]
    assert (out.tokens[0, 5:] == EOS).all() and (out.tokens[1] != EOS).all()
    # suppressing EOS removes it everywhere
    sup = generate(den, pr, base_cfg(suppress_eos=True))
    assert (sup.tokens != EOS).all() and sup.lengths.tolist() == [12, 12, 12]
    # fill_after_eos: rows 0 and 2 stop early, row 1 keeps the batch going to the end
    filled = generate(den, pr, base_cfg(fill_after_eos=True))
    assert torch.equal(filled.tokens, out.tokens) and filled.nfe == out.nfe
    two = pr.take([0, 2])
    den2 = Scripted(12, [5, 0], 2)
    f2 = generate(den2, two, base_cfg(fill_after_eos=True))
    assert f2.lengths.tolist() == [5, 0]
    assert f2.nfe == 4  # blocks 0 and 1 (2 steps each); block 2 filled without model calls
    assert (f2.tokens[:, 8:] == EOS).all() and (f2.trace[0, 8:] == 3).all()
    assert (f2.trace[1, 4:] == 1).all()  # row 1 is all EOS after block 0: filled at step 1


def test_trimmed_lengths_stop_ids():
    tok = torch.tensor([[1, 2, 7, EOS], [EOS, 1, 1, 1], [1, 1, 1, 1]])
    assert trimmed_lengths(tok, [EOS]).tolist() == [3, 0, 4]
    assert trimmed_lengths(tok, [EOS, 7]).tolist() == [2, 0, 4]
    out = generate(Scripted(12, [5, 12, 0], 2), Prompts.from_lists([[1, 2]], PAD), base_cfg(stop_ids=(3,)))
    assert out.lengths.tolist() == [2]  # token at position 2 is 1 + 2 = 3


def test_threshold_decoding(model):
    pr = prompts()
    plain = generate(model, pr, base_cfg())
    # threshold above any confidence, floor = schedule: identical to the plain sampler
    same = generate(model, pr, base_cfg(threshold=1.01, threshold_floor="schedule"))
    assert torch.equal(same.tokens, plain.tokens) and same.nfe == plain.nfe
    # floor = one: one token per step
    one = generate(model, pr, base_cfg(threshold=1.01))
    assert one.nfe == 12 and ((one.trace[:, :, None] == torch.arange(12)).sum(1) == 1).all()
    # threshold 0: whole block in one step
    fast = generate(model, pr, base_cfg(threshold=0.0))
    assert fast.nfe == 3 and (fast.tokens != MASK).all()
    # scripted confident model: every block decided in one step, same tokens as plain
    den = Scripted(12, [5, 12, 0], 5)
    p = generate(den, pr, base_cfg())
    f = generate(den, pr, base_cfg(threshold=0.9))
    assert torch.equal(p.tokens, f.tokens) and f.nfe == 3 and p.nfe == 6


def test_prefix_cache_hook(model):
    pr = prompts()
    cfg = base_cfg()
    # the hook is exact when the canvas does not change between prefill and extend
    x = torch.cat([pr.input_ids, torch.full((3, 12), MASK)], 1)
    am = torch.cat([pr.attention_mask, torch.ones(3, 12, dtype=torch.bool)], 1)
    pos = torch.cat([pr.position_ids, pr.position_ids[:, -1:] + 1 + torch.arange(12)], 1)
    full, cache = model.prefill(x, am, pos, 9)
    ext = model.extend(cache, x[:, 9:], am, pos[:, 9:])
    torch.testing.assert_close(ext, full[:, 9:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, model(x, am, pos))
    out = generate(model, pr, cfg.with_(prefix_cache=True))
    assert out.nfe == 6 and (out.tokens != MASK).all()
    cached_cfg = generate(model, pr, cfg.with_(prefix_cache=True, cfg_scale=1.0, threshold=0.5))
    assert (cached_cfg.tokens != MASK).all()
    with pytest.raises(TypeError):
        generate(lambda t, a, p: model(t, a, p), pr, cfg.with_(prefix_cache=True))


def test_config_validation():
    with pytest.raises(ValueError):
        SamplerConfig(gen_length=10, block_length=4, steps=4)
    with pytest.raises(ValueError):
        SamplerConfig(gen_length=8, block_length=4, steps=3)
    with pytest.raises(ValueError):
        SamplerConfig(remasking="top_p")


def test_noise_chunking_invariant(model):
    cfg = base_cfg(temperature=1.0)
    a = generate(model, prompts(), cfg, seed=2)
    b = generate(model, prompts(), cfg.with_(max_noise_elements=1), seed=2)
    assert torch.equal(a.tokens, b.tokens)


class NoRange:
    """The toy without the optional ``logits_range`` hook (full [B, T, V] logits every call)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, t, a, p):
        return self.model(t, a, p)

    def prefill(self, *args):
        return self.model.prefill(*args)

    def extend(self, *args):
        return self.model.extend(*args)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(prefix_cache=True, cfg_scale=0.5), dict(temperature=0.7, threshold=0.5, prefix_cache=True)],
)
def test_logits_range_hook_is_transparent(model, kw):
    assert model.accepts_logits_range
    a = generate(model, prompts(), base_cfg(**kw), seed=4)
    b = generate(NoRange(model), prompts(), base_cfg(**kw), seed=4)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.trace, b.trace)
