"""Forward masking process: reproducibility from seeds, stratification, counting, canvas building."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.diffusion.elbo import build_masked_batch
from megatron_bgpo.diffusion.masking import MaskingSpec, counted_positions, item_index, mc_seeds, sample_masks

EOS, MASK = 9, 10


def _items(num_resp: int, n_t: int, length: int, seed: int = 0):
    resp, j = item_index(num_resp, n_t)
    seeds = mc_seeds(seed, resp + 100, j)
    counted = torch.ones(num_resp * n_t, length, dtype=torch.bool)
    return resp, j, seeds, counted


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_reproducible_and_layout_free(mode):
    spec = MaskingSpec(mode=mode)
    resp, j, seeds, counted = _items(5, 4, 16)
    a = sample_masks(counted, seeds, j, 4, spec)
    b = sample_masks(counted, seeds, j, 4, spec)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.level, b.level) and torch.equal(a.weight, b.weight)
    perm = torch.randperm(len(seeds), generator=torch.Generator().manual_seed(0))
    c = sample_masks(counted[perm], seeds[perm], j[perm], 4, spec)
    assert torch.equal(c.mask, a.mask[perm]) and torch.equal(c.level, a.level[perm])
    one = sample_masks(counted[7:8], seeds[7:8], j[7:8], 4, spec)  # one item alone, rebuilt from its seed
    assert torch.equal(one.mask[0], a.mask[7])
    other = sample_masks(counted, mc_seeds(1, resp + 100, j), j, 4, spec)
    assert not torch.equal(other.mask, a.mask)


def test_mc_seeds_distinct_and_nonnegative():
    resp, j = item_index(500, 16)
    s = mc_seeds(3, resp, j)
    assert s.unique().numel() == s.numel() and (s >= 0).all()


def test_counted_positions():
    resp = torch.tensor([[1, 2, EOS, 3, EOS], [1, 1, 1, 1, 1], [EOS, EOS, EOS, EOS, EOS]])
    assert counted_positions(resp, MaskingSpec(eos_id=EOS)).all()
    got = counted_positions(resp, MaskingSpec(count="first_eos", eos_id=EOS))
    want = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(got, want)


def test_continuous_levels_stratified():
    eps, n_t, n_resp = 0.01, 8, 400
    resp, j, seeds, counted = _items(n_resp, n_t, 4)
    s = sample_masks(counted, seeds, j, n_t, MaskingSpec(eps=eps))
    u = (s.level - eps) / (1 - eps)
    assert ((u >= j / n_t) & (u < (j + 1) / n_t)).all()  # item j lies in stratum j
    torch.testing.assert_close(s.weight, (1 / s.level).float())
    un = sample_masks(counted, seeds, j, n_t, MaskingSpec(eps=eps, stratified=False))
    assert not ((un.level - eps) / (1 - eps) * n_t).floor().eq(j).all()
    assert abs(float(un.level.mean()) - (1 + eps) / 2) < 0.02


def test_continuous_mask_rate_matches_level():
    resp, j, seeds, counted = _items(6, 2, 4000)
    s = sample_masks(counted, seeds, j, 2, MaskingSpec())
    rate = s.mask.float().mean(1)
    assert (rate - s.level.float()).abs().max() < 0.03


@pytest.mark.parametrize("stratified", [True, False])
def test_discrete_exact_counts(stratified):
    n_t, length = 4, 10
    resp, j, seeds, counted = _items(300, n_t, length)
    counted[::3, 7:] = False  # some responses count only 7 tokens
    s = sample_masks(counted, seeds, j, n_t, MaskingSpec(mode="discrete", stratified=stratified))
    n_counted = counted.sum(1)
    n_mask = s.mask.sum(1)
    assert (n_mask >= 1).all() and (n_mask <= n_counted).all()
    assert not (s.mask & ~counted).any()
    torch.testing.assert_close(s.weight, (n_counted / n_mask).float())
    torch.testing.assert_close(s.level, n_mask.double() / n_counted)
    if stratified:  # l = floor(u L) + 1 with u in [j/n_t, (j+1)/n_t)
        lo = torch.floor(j * n_counted / n_t) + 1
        hi = torch.ceil((j + 1) * n_counted / n_t)
        assert ((n_mask >= lo) & (n_mask <= hi)).all()
    full = s.mask[~torch.isin(torch.arange(len(j)), torch.arange(0, len(j), 3))]
    hist = torch.bincount(full.sum(1), minlength=length + 1)[1:]
    assert hist.min() > 0.5 * hist.float().mean()  # l covers 1..L roughly uniformly


def test_uncounted_never_masked_and_canvas():
    resp = torch.tensor([[1, 2, EOS, 3], [4, 5, 6, 7]])
    spec = MaskingSpec(count="first_eos", eos_id=EOS, mode="discrete")
    counted = counted_positions(resp, spec)
    seeds = mc_seeds(0, torch.arange(2), torch.zeros(2, dtype=torch.int64))
    s = sample_masks(counted, seeds, torch.zeros(2, dtype=torch.int64), 1, spec)
    prompt = torch.tensor([[0, 8], [6, 8]])
    pmask = torch.tensor([[False, True], [True, True]])
    ppos = torch.tensor([[0, 0], [0, 1]])
    batch = build_masked_batch(prompt, pmask, ppos, resp, s, MASK)
    assert batch.tokens.shape == (2, 6)
    assert torch.equal(batch.attention_mask[0], torch.tensor([False, True, True, True, True, False]))
    assert batch.attention_mask[1].all()
    assert torch.equal(batch.position_ids, torch.tensor([[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]))
    assert torch.equal(batch.tokens[batch.loss_mask], torch.full((int(batch.loss_mask.sum()),), MASK))
    assert torch.equal(batch.tokens[~batch.loss_mask], batch.targets[~batch.loss_mask])
    assert not batch.loss_mask[:, :2].any() and not batch.loss_mask[0, 5]


def test_spec_validation():
    with pytest.raises(ValueError):
        MaskingSpec(mode="cosine")
    with pytest.raises(ValueError):
        MaskingSpec(eps=1.0)
