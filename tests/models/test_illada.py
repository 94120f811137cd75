"""iLLaDA (GQA, tied embeddings, mask id 5) on megatron-core against the independent reference forward,
the sampler and the BGPO/ELBO update with its own mask id, and tied embeddings under PP (gloo ranks)."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.models.llada import get_preset
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank
from tests.models.test_llada_parallel import _layout_rank
from tests.models.test_megatron_sampler import _generate_rank
from tests.rl.test_update_layouts import (
    _logical_grads,
    _objective_cfg,
    _oracle_grads,
    _packing,
    _rel,
    _rollout,
    _update_rank,
)

PRESET = "illada-tiny"
TIED = ("embedding.word_embeddings.weight", None), ("output_layer.weight", None)


def test_preset_is_illada_shaped() -> None:
    cfg = get_preset(PRESET)
    assert cfg.family == "illada" and cfg.weight_tying and cfg.n_kv_heads < cfg.n_heads
    assert cfg.mask_token_id == 5


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_logits_and_grads_match_reference(tp: int, pp: int) -> None:
    """fp32 logits (every layout) and gradients (PP1; under PP the tied pair is checked below) equal the
    plain-PyTorch forward on the iLLaDA-named weights within 1e-5."""
    results = run_distributed(_layout_rank, tp * pp, tp, pp, 2 * pp, PRESET)
    assert max(r["grad_err"] for r in results) < 1e-5, results
    logit_errs = [r["logit_err"] for r in results if r["logit_err"] is not None]
    assert len(logit_errs) == tp and max(logit_errs) < 1e-5, results


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_sampler_uses_mask_id_5(temperature: float) -> None:
    """Generation fills every position (no id 5 left), equals the sampler over the reference forward,
    and is the same under TP2 and PP2. Prompts avoid id 5 (it is the mask token)."""
    prompts = [[6, 17, 42, 9, 100], [7, 3], [60, 61, 62]]
    (base,) = run_distributed(_generate_rank, 1, 1, 1, temperature, PRESET, prompts)
    assert torch.equal(base["tokens"], base["reference"])
    assert (base["tokens"] != 5).all()
    for tp, pp in [(2, 1), (1, 2)]:
        for r in run_distributed(_generate_rank, tp * pp, tp, pp, temperature, PRESET, prompts):
            assert torch.equal(r["tokens"], base["tokens"]), (tp, pp)


@pytest.fixture(scope="module")
def single() -> dict:
    results = run_distributed(_update_rank, 1, 1, 1, 4, "bgpo", False, 1, PRESET)
    return {"grads": _logical_grads(results), "loss": results[0]["loss"]}


def test_elbo_update_matches_fp64_oracle(single: dict) -> None:
    """The BGPO (ELBO, mask id 5) gradient of the single-process run equals the fp64 oracle's."""
    oracle, oracle_loss = _oracle_grads("bgpo", PRESET)
    assert set(oracle) == set(single["grads"])
    assert single["loss"] == pytest.approx(oracle_loss, abs=1e-6)
    assert max(_rel(single["grads"][k], oracle[k]) for k in oracle) < 1e-5


@pytest.mark.parametrize("tp,pp,world", [(1, 2, 2), (2, 2, 4)])
def test_tied_embedding_under_pp(single: dict, tp: int, pp: int, world: int) -> None:
    """Under PP the first stage's embedding and the last stage's output layer are two copies of one
    tensor: they start equal, megatron's embedding-group all-reduce (finalize_model_grads) gives both
    the full gradient, which equals the single-process gradient of the one tied weight."""
    results = run_distributed(_update_rank, world, tp, pp, 3, "bgpo", False, 1, PRESET)
    grads = _logical_grads(results)
    embedding, output = grads.pop(TIED[0]), grads.pop(TIED[1])
    assert torch.equal(embedding, output)  # the two copies get the same (all-reduced) gradient
    assert _rel(embedding, single["grads"][TIED[0]]) < 1e-6
    assert set(grads) | {TIED[0]} == set(single["grads"])
    assert max(_rel(grads[k], single["grads"][k]) for k in grads) < 1e-6


def _step_rank(rank: int, world: int, pp: int) -> dict:
    """One BGPO update + megatron Adam step (grad clipping on) with tied embeddings; the weights after."""
    from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
    from megatron_bgpo.rl.microbatches import build_microbatches
    from megatron_bgpo.rl.objectives import get_objective
    from megatron_bgpo.rl.update import policy_update
    from megatron_bgpo.training.config import OptimArgs
    from megatron_bgpo.training.optimizer import build_optimizer

    s = setup_rank(1, pp, preset=PRESET)
    model = wrap_ddp(s.chunks)
    optimizer, _ = build_optimizer(OptimArgs(lr=1e-2, clip_grad=0.05), model, torch.float32, train_steps=1)
    objective = get_objective("bgpo")
    microbatches = build_microbatches(_rollout(PRESET), objective, _packing(3, preset=PRESET))
    zero_grads(model, optimizer)
    before = {n: p.detach().clone() for n, p in s.chunks[0].named_parameters()}
    policy_update(model, microbatches, objective, _objective_cfg("bgpo"), s.tp_group)
    ok, grad_norm, _ = optimizer.step()
    params = dict(s.chunks[0].named_parameters())
    names = [n for n in TIED_NAMES if n in params]
    return {
        "ok": ok,
        "grad_norm": float(grad_norm),
        "after": {n: params[n].detach().clone() for n in names},
        "moved": {n: (params[n] - before[n]).abs().max().item() for n in names},
    }


TIED_NAMES = ("embedding.word_embeddings.weight", "output_layer.weight")


def test_tied_copies_equal_after_optimizer_step() -> None:
    """After a clipped Adam step the PP2 stages' two copies are still bit-identical and equal the
    single-process weight (fp32 tolerance); the clipping norm counts the shared weight once."""
    (one,) = run_distributed(_step_rank, 1, 1)
    first, last = run_distributed(_step_rank, 2, 2)
    assert one["ok"] and first["ok"] and last["ok"]
    assert first["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-6)
    assert one["grad_norm"] > 0.05  # clipping is active, so a double-counted norm would change the step
    embedding, output = first["after"][TIED_NAMES[0]], last["after"][TIED_NAMES[1]]
    assert first["moved"][TIED_NAMES[0]] > 1e-4
    assert torch.equal(embedding, output)
    assert _rel(embedding, one["after"][TIED_NAMES[0]]) < 1e-6
