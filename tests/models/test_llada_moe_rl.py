"""LLaDA-MoE in the RL path with its own mask id (the tiny-moe preset's, not LLaDA's): the diffusion
sampler against the same sampler over the reference forward, and the BGPO (ELBO) update's gradient
against an fp64 oracle through the reference forward, at single / EP2 / TP2 / PP2 (gloo ranks)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.checkpointing.llada_mapping import dict_reader
from megatron_bgpo.checkpointing.mappings.llada_moe import iter_moe_stage_tensors, read_moe_local
from megatron_bgpo.diffusion.sampler import Prompts, generate
from megatron_bgpo.models.llada import get_preset
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.models.llada.moe_reference import moe_reference_forward, random_hf_moe_weights
from megatron_bgpo.parallel import current_groups
from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
from megatron_bgpo.rl.microbatches import build_microbatches
from megatron_bgpo.rl.objectives import RowTerms, get_objective
from megatron_bgpo.rl.update import policy_update
from tests.distributed import run_distributed
from tests.models.test_llada_moe import MIXED, _rel, moe_setup
from tests.models.test_megatron_sampler import _sampler_cfg
from tests.rl.test_update_layouts import N_T, _objective_cfg, _packing, _rollout

PRESET = "tiny-moe"
PROMPTS = [[5, 17, 42, 9, 100], [7, 3], [60, 61, 62]]
LAYOUTS = [(1, 1, 1, 1), (1, 1, 2, 2), (2, 1, 1, 2), (1, 2, 1, 2)]
IDS = ["single", "ep2", "tp2", "pp2"]


def test_preset_has_its_own_mask_id() -> None:
    cfg, base = get_preset(PRESET), get_preset("tiny")
    assert cfg.is_moe and cfg.mask_token_id != base.mask_token_id


def _generate_rank(rank: int, world: int, tp: int, pp: int, ep: int, temperature: float) -> dict:
    cfg, chunks, weights, _, _ = moe_setup(tp, pp, ep, MIXED)
    for chunk in chunks:
        chunk.eval()
    denoiser = MegatronDenoiser(chunks, cfg)
    prompts = Prompts.from_lists(PROMPTS, pad_id=cfg.pad_token_id).repeat_interleave(2)
    sampler = _sampler_cfg(cfg, temperature)
    out = generate(
        denoiser, prompts, sampler, seed=11, vocab=denoiser.vocab_shard(), pipeline=denoiser.pipeline_comm()
    )
    result = {"tokens": out.tokens, "mask_id": cfg.mask_token_id}
    if world == 1:  # the same sampler over the independent reference forward (full vocab)

        def ref_denoiser(tokens, attention_mask, position_ids):
            return moe_reference_forward(weights, cfg, tokens, attention_mask)[0]

        result["reference"] = generate(ref_denoiser, prompts, sampler, seed=11).tokens
    return result


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_sampler_with_moe_mask_id(temperature: float) -> None:
    """Every generated position decided (no mask id left), equal to the sampler over the reference
    forward, and the same tokens at EP2, TP2 and PP2."""
    (base,) = run_distributed(_generate_rank, 1, 1, 1, 1, temperature)
    assert torch.equal(base["tokens"], base["reference"])
    assert (base["tokens"] != base["mask_id"]).all()
    for tp, pp, ep, world in LAYOUTS[1:]:
        for r in run_distributed(_generate_rank, world, tp, pp, ep, temperature):
            assert torch.equal(r["tokens"], base["tokens"]), (tp, pp, ep)


def _update_rank(rank: int, world: int, tp: int, pp: int, ep: int) -> dict:
    """One BGPO policy update (ELBO with the preset's mask id, 3 micro-batches per rank) through megatron
    DDP; every gradient this rank holds vs the fp64 oracle's (full batch: DDP sums dense gradients over
    DP, the experts see every rank's tokens)."""
    cfg, chunks, _, groups, ep_rank = moe_setup(tp, pp, ep, MIXED)
    model = wrap_ddp(chunks)
    dp, dp_rank = current_groups().dp_size, current_groups().dp_rank
    batch = _rollout(PRESET)
    per = len(batch) // dp
    local = batch.select(torch.arange(dp_rank * per, (dp_rank + 1) * per))
    objective = get_objective("bgpo")
    microbatches = build_microbatches(local, objective, _packing(3, preset=PRESET))
    zero_grads(model)
    policy_update(model, microbatches, objective, _objective_cfg("bgpo"), groups.tp_group_or_none)
    oracle = _oracle_hf_grads(cfg)
    err, checked = 0.0, 0
    for chunk in chunks:
        params = dict(chunk.named_parameters())
        for name, m, layer, expert in iter_moe_stage_tensors(chunk, cfg, ep_rank, ep):
            expected = read_moe_local(m, cfg, layer, dict_reader(oracle), groups.tp_rank, tp, expert)
            # finalized by the schedule: q/k-norms and routers already summed over TP
            err = max(err, _rel(params[name].main_grad, expected.float()))
            checked += 1
    return {"err": err, "checked": checked}


def _oracle_hf_grads(cfg) -> dict[str, torch.Tensor]:
    """fp64 oracle: the whole batch's BGPO loss in one graph through the reference forward (HF names)."""
    weights = {k: v.double().requires_grad_() for k, v in random_hf_moe_weights(cfg, seed=3).items()}
    objective = get_objective("bgpo")
    (mb,) = build_microbatches(_rollout(PRESET), objective, _packing(mbs=10_000, preset=PRESET))
    logits, _ = moe_reference_forward(weights, cfg, mb.tokens, mb.attention_mask)
    lp = torch.log_softmax(logits, -1).gather(-1, mb.targets[..., None])[..., 0]
    rows = RowTerms(
        (mb.elbo_weight.double() * (lp * mb.loss_mask).sum(-1)).reshape(mb.row_shape),
        mb.advantages,
        mb.loss_weight,
        num_mc_samples=N_T,
    )
    loss, _ = objective.fn(rows, _objective_cfg("bgpo"))
    loss.backward()
    return {k: v.grad for k, v in weights.items()}


@pytest.mark.parametrize("tp,pp,ep,world", LAYOUTS, ids=IDS)
def test_bgpo_update_matches_fp64_oracle(tp: int, pp: int, ep: int, world: int) -> None:
    """The BGPO gradient of every tensor (training mode, the MoE layer sequence-parallel inside at TP2)
    equals the fp64 oracle's within 1e-5."""
    results = run_distributed(_update_rank, world, tp, pp, ep)
    assert all(r["checked"] > 0 for r in results), results
    assert max(r["err"] for r in results) < 1e-5, results
