"""The accumulated BGPO gradient is the gradient of the exact batch loss whatever the layout:
micro-batch size, number of micro-batches, TP, PP and DP (megatron DDP + 1F1B schedule)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.checkpointing.llada_mapping import MAPPINGS
from megatron_bgpo.checkpointing.mappings.base import (
    dict_reader,
    hf_prefix,
    iter_stage_tensors,
    model_mappings,
    read_local,
    stage_mappings,
)
from megatron_bgpo.diffusion.masking import MaskingSpec
from megatron_bgpo.models.llada import get_preset
from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
from megatron_bgpo.parallel import current_groups
from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
from megatron_bgpo.rl.objectives import ObjectiveConfig, RowTerms, get_objective
from megatron_bgpo.rl.rollout import RolloutBatch
from megatron_bgpo.rl.update import attach_policy_terms, policy_update
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank

PRESET, N_T, PROMPT, RESP = "tiny-gqa", 4, 5, 8


def _no_mask(tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Clean tokens never equal the mask id (iLLaDA's is 5, inside the random id range)."""
    return torch.where(tokens == mask_id, mask_id + 1, tokens)


def _rollout(preset: str = PRESET) -> RolloutBatch:
    cfg = get_preset(preset)
    gen = torch.Generator().manual_seed(21)
    prompts = _no_mask(torch.randint(0, 200, (4, PROMPT), generator=gen), cfg.mask_token_id)
    mask = torch.ones(4, PROMPT, dtype=torch.bool)
    mask[1, :2] = False
    mask[3, :1] = False
    prompts = torch.where(mask, prompts, torch.full_like(prompts, cfg.pad_token_id))
    responses = _no_mask(torch.randint(0, 200, (4, RESP), generator=gen), cfg.mask_token_id)
    responses[0, 6:] = cfg.eos_token_id
    return RolloutBatch(
        prompt_ids=prompts,
        prompt_mask=mask,
        response_ids=responses,
        advantages=torch.tensor([1.0, -0.5, 0.75, -0.25], dtype=torch.float64),
        response_uid=torch.arange(4),
        loss_weight=torch.full((4,), 0.25, dtype=torch.float64),
    )


def _packing(mbs: int, ar_block: int = 1, preset: str = PRESET) -> PackingConfig:
    cfg = get_preset(preset)
    spec = MaskingSpec(eos_id=cfg.eos_token_id)
    return PackingConfig(N_T, mbs, spec, seed=5, mask_id=cfg.mask_token_id, ar_block_length=ar_block)


def _objective_cfg(name: str) -> ObjectiveConfig:
    return ObjectiveConfig(clip_eps=0.2, kl_beta=0.0) if name == "diffu_grpo" else ObjectiveConfig()


def _merge_tp(m, shards: list[torch.Tensor]) -> torch.Tensor:
    """Logical (TP=1) tensor from TP shards ordered by TP rank."""
    if m.split == "replicated":
        return shards[0]
    if m.split == "row":
        return torch.cat(shards, dim=1)
    if m.split == "glu":
        halves = [s.chunk(2, dim=0) for s in shards]
        return torch.cat([torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves])])
    return torch.cat(shards, dim=0)  # vocab, qkv (query groups are contiguous per rank)


def _update_rank(
    rank: int,
    world: int,
    tp: int,
    pp: int,
    mbs: int,
    objective_name: str = "bgpo",
    off_policy: bool = False,
    ar_block: int = 1,
    preset: str = PRESET,
) -> dict:
    s = setup_rank(tp, pp, preset=preset)
    model = wrap_ddp(s.chunks)
    groups = current_groups()
    dp, dp_rank = groups.dp_size, groups.dp_rank
    batch = _rollout(preset)
    per = len(batch) // dp
    local = batch.select(torch.arange(dp_rank * per, (dp_rank + 1) * per))
    objective = get_objective(objective_name)
    microbatches = build_microbatches(local, objective, _packing(mbs, ar_block, preset))
    if off_policy:  # old terms from a forward-only pass; at theta = theta_old the update is on-policy
        attach_policy_terms(model, microbatches, objective, s.tp_group)
    zero_grads(model)
    stats = policy_update(
        model,
        microbatches,
        objective,
        _objective_cfg(objective_name),
        s.tp_group,
        expect_zero_log_ratio=off_policy,
    )
    grads = {}
    for chunk in s.chunks:
        params = dict(chunk.named_parameters())
        for name, m, layer in iter_stage_tensors(chunk, stage_mappings(s.cfg)):
            grads[(m.megatron, layer)] = params[name].main_grad.detach().clone()
    return {
        "tp_rank": s.tp_rank,
        "dp_rank": dp_rank,
        "grads": grads,
        "loss": stats.loss,
        "n_mb": stats.num_microbatches,
        "last": s.is_last_stage,
        "mismatches": stats.log_ratio_mismatches,
    }


def _logical_grads(results: list[dict]) -> dict:
    by_key: dict = {}
    for r in results:
        if r["dp_rank"] != 0:
            continue
        for key, g in r["grads"].items():
            by_key.setdefault(key, {})[r["tp_rank"]] = g
    mapping = {m.megatron: m for m in MAPPINGS}
    return {k: _merge_tp(mapping[k[0]], [v[i] for i in sorted(v)]) for k, v in by_key.items()}


def _oracle_grads(objective_name: str = "bgpo", preset: str = PRESET) -> tuple[dict, float]:
    """fp64 reference: the whole batch loss in one graph through the plain-PyTorch forward."""
    cfg = get_preset(preset)
    weights = {k: v.double().requires_grad_() for k, v in random_hf_weights(cfg, seed=3).items()}
    objective = get_objective(objective_name)
    (mb,) = build_microbatches(_rollout(preset), objective, _packing(mbs=10_000, preset=preset))
    logits = reference_forward(weights, cfg, mb.tokens, mb.attention_mask)
    lp = torch.log_softmax(logits, -1).gather(-1, mb.targets[..., None])[..., 0]
    if objective.likelihood == "elbo":
        rows = RowTerms(
            (mb.elbo_weight.double() * (lp * mb.loss_mask).sum(-1)).reshape(mb.row_shape),
            mb.advantages,
            mb.loss_weight,
            num_mc_samples=N_T,
        )
    else:
        done = mb.completion_slice
        rows = RowTerms(lp[:, done], mb.advantages, mb.loss_weight, valid=mb.loss_mask[:, done])
    loss, _ = objective.fn(rows, _objective_cfg(objective_name))
    loss.backward()
    return hf_to_logical(cfg, {k: v.grad for k, v in weights.items()}), loss.item()


def hf_to_logical(cfg, hf_grads: dict[str, torch.Tensor]) -> dict:
    """HF-named gradients -> {(megatron name, layer): logical TP=1 tensor}, as _logical_grads keys them."""
    logical = {}
    for m in model_mappings(cfg):
        for layer in range(cfg.n_layers) if m.per_layer else [None]:
            logical[(m.megatron, layer)] = read_local(m, cfg, layer, dict_reader(hf_grads, hf_prefix(cfg)))
    return logical


@pytest.fixture(scope="module")
def baseline() -> dict:
    results = run_distributed(_update_rank, 1, 1, 1, 1)
    return {"grads": _logical_grads(results), "loss": results[0]["loss"], "n_mb": results[0]["n_mb"]}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def test_baseline_matches_fp64_oracle(baseline: dict) -> None:
    oracle, oracle_loss = _oracle_grads()
    assert baseline["n_mb"] == 4 * N_T  # micro-batch size 1: one MC sample per micro-batch
    assert baseline["loss"] == pytest.approx(oracle_loss, abs=1e-6)
    assert baseline["loss"] == pytest.approx(
        -0.25 * (1.0 - 0.5 + 0.75 - 0.25), abs=1e-6
    )  # on-policy: -sum w A
    assert set(oracle) == set(baseline["grads"])
    worst = max(_rel(baseline["grads"][k], oracle[k]) for k in oracle)
    assert worst < 1e-5, worst


@pytest.mark.parametrize(
    "tp,pp,world,mbs", [(1, 1, 1, 4), (2, 1, 2, 4), (1, 2, 2, 3), (1, 1, 2, 4), (2, 2, 4, 5)]
)
def test_layout_invariance(baseline: dict, tp: int, pp: int, world: int, mbs: int) -> None:
    results = run_distributed(_update_rank, world, tp, pp, mbs)
    grads = _logical_grads(results)
    assert set(grads) == set(baseline["grads"])
    worst = max(_rel(grads[k], baseline["grads"][k]) for k in grads)
    assert worst < 1e-6, (tp, pp, world, mbs, worst)
    total = sum(r["loss"] for r in results if r["last"] and r["tp_rank"] == 0)
    assert total == pytest.approx(baseline["loss"], abs=1e-6)


def test_vrpo_ol_on_policy_gradient_equals_bgpo(baseline: dict) -> None:
    """Same seeded masks: on-policy the non-linear objective and the BGPO bound share their gradient."""
    results = run_distributed(_update_rank, 2, 2, 1, 2, "vrpo_ol")
    grads = _logical_grads(results)
    assert max(_rel(grads[k], baseline["grads"][k]) for k in grads) < 1e-6
    assert results[0]["n_mb"] == 2  # 2 responses per micro-batch, each with all n_t canvases


def test_off_policy_first_update_equals_on_policy(baseline: dict) -> None:
    results = run_distributed(_update_rank, 2, 1, 2, 4, "bgpo", True)
    assert [r["mismatches"] for r in results] == [[], []]  # d_j == 0 exactly through the PP2 schedule
    grads = _logical_grads(results)
    assert max(_rel(grads[k], baseline["grads"][k]) for k in grads) < 1e-6


def test_diffu_grpo_matches_fp64_oracle() -> None:
    oracle, oracle_loss = _oracle_grads("diffu_grpo")
    results = run_distributed(_update_rank, 2, 2, 1, 3, "diffu_grpo")
    grads = _logical_grads(results)
    assert max(_rel(grads[k], oracle[k]) for k in grads) < 1e-5
    assert sum(r["loss"] for r in results if r["tp_rank"] == 0) == pytest.approx(oracle_loss, abs=1e-6)
