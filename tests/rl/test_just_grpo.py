"""JustGRPO (exact autoregressive-order likelihood, one pass per position or per block of k tokens):
canvas construction, the per-token clipped loss, and its gradient through the Megatron model against a
float64 single-graph transcription of LeapLabTHU/JustGRPO ``grpo.py::logprob_loss``, for any layout."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_bgpo.diffusion.masking import MaskingSpec
from megatron_bgpo.models.llada import get_preset
from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
from megatron_bgpo.rl.objectives import ObjectiveConfig, RowTerms, get_objective, just_grpo
from tests.distributed import run_distributed
from tests.rl.test_update_layouts import (
    PRESET,
    PROMPT,
    RESP,
    _logical_grads,
    _rel,
    _rollout,
    _update_rank,
    hf_to_logical,
)

MASK, EOS = get_preset(PRESET).mask_token_id, get_preset(PRESET).eos_token_id


@pytest.mark.parametrize("k", [1, 3, 8])
def test_canvases_reveal_the_prefix_and_score_each_token_once(k: int) -> None:
    batch = _rollout()
    spec = MaskingSpec(eos_id=EOS, count="first_eos")
    (mb,) = build_microbatches(
        batch, get_objective("just_grpo"), PackingConfig(4, 10_000, spec, mask_id=MASK, ar_block_length=k)
    )
    passes = math.ceil(RESP / k)
    assert mb.num_canvases == len(batch) * passes
    resp = mb.tokens[:, PROMPT:]
    scored = mb.loss_mask[:, PROMPT:]
    for c in range(mb.num_canvases):
        i, b = divmod(c, passes)
        y = batch.response_ids[i]
        assert torch.equal(resp[c, : b * k], y[: b * k])  # the earlier tokens, clean
        assert (resp[c, b * k :] == MASK).all()  # a fully masked remainder
        assert torch.equal(mb.tokens[c, :PROMPT], batch.prompt_ids[i])
        counted = torch.ones(RESP, dtype=torch.bool) if i else torch.arange(RESP) <= 6  # row 0: EOS at 6
        expect = (torch.arange(RESP) >= b * k) & (torch.arange(RESP) < (b + 1) * k) & counted
        assert torch.equal(scored[c], expect)
        assert torch.equal(mb.attention_mask[c, PROMPT:], counted)  # after the first EOS: key-padded out
        assert mb.advantages[c] == batch.advantages[i]
    per_response = scored.view(len(batch), passes, RESP).sum(1)
    assert per_response.max() == 1  # every counted token scored by exactly one pass


def test_loss_clips_each_token() -> None:
    """Off-policy: per token -min(rho A, clip(rho, 0.8, 1.2) A) / L, and no gradient from clipped tokens."""
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.0, -2.5, 0.0], [-1.5, -3.0, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True, False], [True, True, False]])
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = torch.tensor([0.5, 0.25], dtype=torch.float64)
    loss, stats = just_grpo(RowTerms(logp, adv, w, old_logp=old, valid=valid), ObjectiveConfig())
    rho = torch.exp(logp.detach() - old)  # [[1, e^.5], [e^.5, 1]]
    expect = (0.5 * -(1.0 + min(rho[0, 1], 1.2) * 1.0) + 0.25 * -(-2.0 * rho[1, 0] - 2.0 * 1.0)) / 3
    assert loss.item() == pytest.approx(float(expect), abs=1e-12)
    loss.backward()
    grad = torch.tensor([[-0.5 / 3, 0.0, 0.0], [0.25 * 2.0 * float(rho[1, 0]) / 3, 0.5 / 3, 0.0]])
    torch.testing.assert_close(logp.grad, grad.double())  # (0, 1) clipped (A > 0, rho > 1.2): zero
    assert stats["ppo_clipped"] == 2.0
    with pytest.raises(ValueError, match="valid"):
        just_grpo(RowTerms(logp, adv, w), ObjectiveConfig())


def _oracle(k: int) -> tuple[dict, float]:
    """fp64, one graph: JustGRPO's loop over passes (x = [prompt, y_<t, MASK...], log-prob of the next
    k tokens, ratio = exp(lp - lp.detach()), -min(ratio A, clip(ratio, 0.8, 1.2) A) * w / L)."""
    cfg = get_preset(PRESET)
    weights = {n: v.double().requires_grad_() for n, v in random_hf_weights(cfg, seed=3).items()}
    b = _rollout()
    n, length = len(b), b.response_ids.shape[1]
    attn = torch.cat([b.prompt_mask, torch.ones(n, length, dtype=torch.bool)], 1)
    a = b.advantages[:, None]
    total = torch.zeros((), dtype=torch.float64)
    for t in range(0, length, k):
        x = torch.cat(
            [b.prompt_ids, b.response_ids[:, :t], torch.full((n, length - t), cfg.mask_token_id)], 1
        )
        logits = reference_forward(weights, cfg, x, attn)[:, PROMPT + t : PROMPT + min(t + k, length)]
        lp = torch.log_softmax(logits, -1).gather(-1, b.response_ids[:, t : t + k, None])[..., 0]
        ratio = torch.exp(lp - lp.detach())
        loss = -torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a)
        total = total + (loss.sum(-1) * b.loss_weight / length).sum()
    total.backward()
    return hf_to_logical(cfg, {name: v.grad for name, v in weights.items()}), total.item()


@pytest.fixture(scope="module")
def oracle() -> dict[int, tuple[dict, float]]:
    return {k: _oracle(k) for k in (1, 3)}


@pytest.mark.parametrize(
    "tp,pp,world,mbs,k",
    [(1, 1, 1, 1, 1), (1, 1, 1, 5, 1), (2, 1, 2, 4, 1), (1, 2, 2, 3, 1), (1, 1, 2, 4, 1), (2, 1, 2, 4, 3)],
)
def test_gradient_matches_fp64_oracle_in_every_layout(oracle, tp: int, pp: int, world: int, mbs: int, k: int):
    grads_ref, loss_ref = oracle[k]
    results = run_distributed(_update_rank, world, tp, pp, mbs, "just_grpo", False, k)
    grads = _logical_grads(results)
    assert set(grads) == set(grads_ref)
    worst = max(_rel(grads[key], grads_ref[key]) for key in grads)
    assert worst < 1e-5, (tp, pp, world, mbs, k, worst)
    total = sum(r["loss"] for r in results if r["last"] and r["tp_rank"] == 0)
    assert total == pytest.approx(loss_ref, abs=1e-6)
    assert total == pytest.approx(-0.25 * (1.0 - 0.5 + 0.75 - 0.25), abs=1e-6)  # on-policy: -sum w A
    passes = math.ceil(RESP / k) * 4 // (world // (tp * pp))
    assert max(r["n_mb"] for r in results) == math.ceil(passes / mbs)


def test_off_policy_first_update_is_exact_through_pp2(oracle) -> None:
    results = run_distributed(_update_rank, 2, 1, 2, 4, "just_grpo", True, 1)
    assert [r["mismatches"] for r in results] == [[], []]
    grads = _logical_grads(results)
    assert max(_rel(grads[key], oracle[1][0][key]) for key in grads) < 1e-5
