"""Objectives: BGPO equals the non-linear ELBO objective on-policy, bounds it off-policy, and every
registered objective matches hand-computed values."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.rl.advantages import group_advantages, informative_groups
from megatron_bgpo.rl.objectives import OBJECTIVES, ObjectiveConfig, RowTerms, get_objective


def _toy_elbo_terms(theta: torch.Tensor, group: int, n_t: int, seed: int) -> torch.Tensor:
    """ELBO terms l[i, j] = (1/t_ij) sum_{k in mask_ij} log softmax(x_ik theta^T)[y_ik] (fp64)."""
    gen = torch.Generator().manual_seed(seed)
    length, vocab, dim = 6, theta.shape[0], theta.shape[1]
    x = torch.randn(group, length, dim, generator=gen, dtype=torch.float64)
    y = torch.randint(0, vocab, (group, length), generator=gen)
    t = torch.rand(group, n_t, generator=gen, dtype=torch.float64).clamp_min(0.05)
    masks = torch.rand(group, n_t, length, generator=gen, dtype=torch.float64) < t[..., None]
    logp = torch.log_softmax(x @ theta.T, -1).gather(-1, y[..., None])[..., 0]  # [G, L]
    return (masks * logp[:, None, :]).sum(-1) / t  # [G, n_t]


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
def test_bgpo_on_policy_equals_nonlinear_objective_fp64(sign: float) -> None:
    group, n_t = 4, 8
    theta = torch.randn(11, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    advantages = sign * torch.tensor([0.5, 1.5, 0.25, 2.0], dtype=torch.float64)
    advantages[0] = -advantages[0]  # both signs in every case except all-zero

    # Non-linear objective with all n_t samples in one graph: -(1/G) sum_i exp(mean_j d_ij) A_i.
    th_ref = theta.clone().requires_grad_()
    terms = _toy_elbo_terms(th_ref, group, n_t, seed=1)
    d = terms - terms.detach()
    nonlinear = -(torch.exp(d.mean(-1)) * advantages).sum() / group
    nonlinear.backward()

    # BGPO: one backward per (response, MC sample), gradients accumulated.
    th = theta.clone().requires_grad_()
    cfg = ObjectiveConfig()
    total = 0.0
    for i in range(group):
        for j in range(n_t):
            row = _toy_elbo_terms(th, group, n_t, seed=1)[i, j].reshape(1)
            loss, _ = OBJECTIVES["bgpo"].fn(
                RowTerms(
                    row,
                    advantages[i].reshape(1),
                    torch.full((1,), 1.0 / group, dtype=torch.float64),
                    num_mc_samples=n_t,
                ),
                cfg,
            )
            loss.backward()
            total += loss.item()
    assert abs(total - nonlinear.item()) <= 1e-10 * max(1.0, abs(nonlinear.item()))
    if sign != 0:
        rel = ((th.grad - th_ref.grad).norm() / th_ref.grad.norm()).item()
        assert rel < 1e-10
    else:
        assert th.grad.abs().max().item() == 0.0


def test_bgpo_off_policy_is_a_lower_bound_with_equality_at_zero() -> None:
    gen = torch.Generator().manual_seed(3)
    n_t = 16
    cfg = ObjectiveConfig()
    for trial in range(200):
        d = torch.randn(n_t, generator=gen, dtype=torch.float64) * (0.0 if trial == 0 else 0.5 + trial / 100)
        a = torch.randn((), generator=gen, dtype=torch.float64) * 2
        old = torch.randn(n_t, generator=gen, dtype=torch.float64)
        rows = RowTerms(
            old + d, a.expand(n_t), torch.ones(n_t, dtype=torch.float64), old_logp=old, num_mc_samples=n_t
        )
        bound = -OBJECTIVES["bgpo"].fn(rows, cfg)[0]
        nonlinear = torch.exp(d.mean()) * a
        if trial == 0:
            assert torch.isclose(bound, nonlinear, rtol=1e-12, atol=1e-12)
        else:
            assert bound <= nonlinear + 1e-12, (trial, bound.item(), nonlinear.item())


def _two_responses(objective: str) -> tuple[RowTerms, ObjectiveConfig]:
    f64 = dict(dtype=torch.float64)
    if objective == "bgpo":  # rows = MC samples: response 1 (A=1) d=[0.1,-0.2]; response 2 (A=-0.5) d=[0.3,0]
        d = torch.tensor([0.1, -0.2, 0.3, 0.0], **f64)
        a = torch.tensor([1.0, 1.0, -0.5, -0.5], **f64)
        rows = RowTerms(d, a, torch.full((4,), 0.5, **f64), old_logp=torch.zeros(4, **f64), num_mc_samples=2)
        return rows, ObjectiveConfig()
    if objective == "vrpo_ol":  # rows = responses with n_t=2 samples, same d as above
        d = torch.tensor([[0.1, -0.2], [0.3, 0.0]], **f64)
        a = torch.tensor([1.0, -0.5], **f64)
        return RowTerms(
            d, a, torch.full((2,), 0.5, **f64), old_logp=torch.zeros(2, 2, **f64)
        ), ObjectiveConfig()
    # diffu_grpo: per-token log-ratios, eps 0.2, two completions of 2 and 1 valid tokens (weight 1/2 each).
    d = torch.tensor([[0.1, -0.3], [0.5, 0.0]], **f64)
    valid = torch.tensor([[True, True], [True, False]])
    rows = RowTerms(
        d,
        torch.tensor([1.0, -1.0], **f64),
        torch.full((2,), 1 / 2, **f64),
        torch.zeros(2, 2, **f64),
        valid=valid,
    )
    return rows, ObjectiveConfig(clip_eps=0.2)


# Hand-derived: bgpo -0.5*((1.1+0.8)/2 - 0.5*(e^0.3 + 1)/2); vrpo_ol -0.5*(e^-0.05 - 0.5 e^0.15);
# diffu_grpo ((-e^0.1 - e^-0.3)/2 + e^0.5)/2, a token mean per completion (the min picks the unclipped
# term: 1.105 < 1.2 and 0.741 < 0.8 with A>0, -1.649 < -1.2 with A<0).
HAND = {"bgpo": -0.18126764905299964, "vrpo_ol": -0.18515615156828624, "diffu_grpo": 0.3628633506607227}


@pytest.mark.parametrize("name", sorted(HAND))
def test_registry_objectives_on_hand_computed_example(name: str) -> None:
    rows, cfg = _two_responses(name)
    loss, stats = get_objective(name).fn(rows, cfg)
    assert loss.item() == pytest.approx(HAND[name], rel=1e-12)
    assert stats["overflow_guard"] == 0


def test_registry_lists_all_and_rejects_unknown() -> None:
    assert set(OBJECTIVES) >= {"bgpo", "vrpo_ol", "diffu_grpo", "elbo_sft"}
    assert OBJECTIVES["bgpo"].row == "mc_sample" and OBJECTIVES["vrpo_ol"].row == "response"
    with pytest.raises(ValueError, match="unknown objective 'ppo'"):
        get_objective("ppo")


def test_bgpo_bound_switches_and_overflow_guard() -> None:
    d = torch.tensor([0.5, 100.0], dtype=torch.float64)
    a = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    w = torch.ones(2, dtype=torch.float64)
    rows = RowTerms(d, a, w, old_logp=torch.zeros(2, dtype=torch.float64), num_mc_samples=1)
    loss, stats = OBJECTIVES["bgpo"].fn(rows, ObjectiveConfig(max_log_ratio=20.0))
    assert stats["overflow_guard"] == 1 and stats["exp_rows"] == 2  # clamp_fraction 1/2
    assert loss.item() == pytest.approx(
        torch.exp(torch.tensor(0.5)).item() + torch.exp(torch.tensor(20.0)).item()
    )
    taylor, _ = OBJECTIVES["bgpo"].fn(rows, ObjectiveConfig(bound="taylor"))
    assert taylor.item() == pytest.approx(1.5 + 101.0)
    pos = RowTerms(d, -a, w, old_logp=torch.zeros(2, dtype=torch.float64), num_mc_samples=1)
    jensen, _ = OBJECTIVES["bgpo"].fn(pos, ObjectiveConfig(bound="jensen", max_log_ratio=20.0))
    assert jensen.item() == pytest.approx(
        -(torch.exp(torch.tensor(0.5)).item() + torch.exp(torch.tensor(20.0)).item())
    )


def test_group_advantages_hand_values() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    a = group_advantages(rewards, eps=0.0 + 1e-6)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()  # 0.57735...
    s = std + 1e-6
    assert a[0].tolist() == pytest.approx([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s])
    assert a[1].abs().max().item() == 0.0
    assert informative_groups(rewards).tolist() == [True, False]
    assert group_advantages(rewards, normalize_std=False)[0].tolist() == [0.5, -0.5, -0.5, 0.5]
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(torch.ones(3, 1))


def test_elbo_sft_is_negative_mean_elbo() -> None:
    rows = RowTerms(torch.tensor([-2.0, -4.0]), torch.zeros(2), torch.full((2,), 0.5), num_mc_samples=2)
    loss, _ = get_objective("elbo_sft").fn(rows, ObjectiveConfig())
    assert loss.item() == pytest.approx(1.5)  # -(0.5 * -2 + 0.5 * -4) / 2
    with pytest.raises(ValueError, match="elbo_sft needs num_mc_samples"):  # n_t comes with the rows
        get_objective("elbo_sft").fn(RowTerms(rows.logp, rows.advantages, rows.weights), ObjectiveConfig())


def test_masked_sft_terms_drop_the_elbo_weight() -> None:
    """policy_terms: elbo_sft's row term is (1/t) sum of masked log-probs, masked_sft's the plain sum."""
    from megatron_bgpo.rl import update
    from megatron_bgpo.rl.microbatches import MicroBatch

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 7, (2, 5), generator=gen)
    loss_mask = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    elbo_weight = torch.tensor([4.0, 2.5])
    mb = MicroBatch(
        tokens=targets, attention_mask=torch.ones_like(loss_mask), targets=targets, loss_mask=loss_mask,
        elbo_weight=elbo_weight, row_shape=(2,), advantages=torch.ones(2), loss_weight=torch.ones(2),
        canvas_ids=torch.arange(2), completion_slice=slice(1, 5),
    )  # fmt: skip
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    plain = torch.stack([logp[0, [1, 2, 4]].sum(), logp[1, 2]])  # hand-picked masked positions
    lp = torch.where(loss_mask, logp, torch.zeros_like(logp))  # the forward's output: zeros elsewhere
    elbo, _ = update.policy_terms(mb, lp, get_objective("elbo_sft"))
    masked, _ = update.policy_terms(mb, lp, get_objective("masked_sft"))
    assert torch.allclose(elbo.double(), (elbo_weight.double() * plain), rtol=1e-6)
    assert torch.allclose(masked.double(), plain, rtol=1e-6)
    assert get_objective("masked_sft").supervised and not get_objective("bgpo").supervised


# ---- diffu-GRPO against a float64 transcription of d1's loss (dllm-reasoning/d1, diffu_grpo_trainer.py) ----
EOS_D1 = 9


def _d1_completion_mask(completion_ids: torch.Tensor) -> torch.Tensor:
    """d1 `_generate_and_score_completions`: mask everything after the first EOS."""
    is_eos = completion_ids == EOS_D1
    eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long)
    eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
    sequence_indices = torch.arange(is_eos.size(1)).expand(is_eos.size(0), -1)
    return (sequence_indices <= eos_idx.unsqueeze(1)).int()


def _d1_compute_loss(logps, old, ref, advantages, completion_mask, epsilon, beta):
    """d1 `compute_loss` for one per-device batch."""
    per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1
    coef_1 = torch.exp(logps - old)
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon)
    per_token_loss = -torch.min(coef_1 * advantages.unsqueeze(1), coef_2 * advantages.unsqueeze(1))
    per_token_loss = per_token_loss + beta * per_token_kl
    return (per_token_loss * completion_mask).sum() / completion_mask.sum()


def test_diffu_grpo_matches_d1_loss_fp64() -> None:
    """d1 with one completion per device batch and gradient accumulation over the N completions (HF
    Trainer divides each micro-batch loss by the accumulation steps): loss = mean_i of the token mean of
    completion i, with A = r - mean (no std). Ours: weight 1/N, mask from counted_positions(first_eos)."""
    from megatron_bgpo.diffusion.masking import MaskingSpec, counted_positions

    gen = torch.Generator().manual_seed(11)
    prompts, group, length, eps, beta = 2, 4, 12, 0.2, 0.04
    n = prompts * group
    completion_ids = torch.randint(0, 8, (n, length), generator=gen)
    for i, eos_at in enumerate([3, 0, 11, 7, 5, 1, 9, 2]):  # row 2 ends with its only EOS; others padded
        completion_ids[i, eos_at:] = EOS_D1
    completion_ids[3] = torch.randint(0, 8, (length,), generator=gen)  # no EOS at all
    rewards = torch.rand(prompts, group, generator=gen, dtype=torch.float64) * 2
    logps0 = -torch.rand(n, length, generator=gen, dtype=torch.float64) * 4
    old = logps0 + 0.4 * torch.randn(n, length, generator=gen, dtype=torch.float64)  # clip active
    ref = logps0 + 0.3 * torch.randn(n, length, generator=gen, dtype=torch.float64)

    d1_adv = (rewards - rewards.mean(dim=1, keepdim=True)).reshape(-1)
    d1_mask = _d1_completion_mask(completion_ids)
    cur_d1 = logps0.clone().requires_grad_()
    one = [slice(i, i + 1) for i in range(n)]  # per-device batch of one completion
    d1 = sum(_d1_compute_loss(cur_d1[s], old[s], ref[s], d1_adv[s], d1_mask[s], eps, beta) for s in one) / n
    d1.backward()

    valid = counted_positions(completion_ids, MaskingSpec(count="first_eos", eos_id=EOS_D1))
    assert torch.equal(valid, d1_mask.bool())
    adv = group_advantages(rewards, normalize_std=False).reshape(-1)
    assert torch.equal(adv, d1_adv)
    cur = logps0.clone().requires_grad_()
    rows = RowTerms(cur, adv, torch.full((n,), 1.0 / n, dtype=torch.float64), old, ref, valid)
    loss, stats = get_objective("diffu_grpo").fn(rows, ObjectiveConfig(clip_eps=eps, kl_beta=beta))
    loss.backward()
    assert loss.item() == pytest.approx(d1.item(), rel=1e-12, abs=1e-15)
    assert torch.allclose(cur.grad, cur_d1.grad, rtol=1e-10, atol=1e-15)
    assert stats["exp_rows"] == valid.sum().item() and 0 < stats["ppo_clipped"] < stats["exp_rows"]
    # the loss does not grow with the canvas length: padding a completion after its EOS changes nothing
    longer = RowTerms(
        torch.cat([cur.detach(), logps0], 1), adv, rows.weights, torch.cat([old, old], 1),
        torch.cat([ref, ref], 1), torch.cat([valid, torch.zeros_like(valid)], 1),
    )  # fmt: skip
    again, _ = get_objective("diffu_grpo").fn(longer, ObjectiveConfig(clip_eps=eps, kl_beta=beta))
    assert again.item() == pytest.approx(loss.item(), rel=1e-12)
