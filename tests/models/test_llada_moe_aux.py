"""LLaDA-MoE's router load-balancing loss under BGPO's per-micro-batch accumulation (docs/moe.md).

Hand computation: the gradient of ``main + coeff * w * sum_mb aux(mb)``, ``aux`` = megatron's per-layer
switch loss written out in moe_reference.megatron_aux_loss and ``w = 1 / num_microbatches`` (the
schedule's default), through the plain-PyTorch reference forward. Layouts: the same MC-sample rows as
4 micro-batches of 1, 2 of 2, 1 of 4, on the RL update's log-prob path (`llada_selected_logprobs`).
"""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.models.llada.model import llada_selected_logprobs
from megatron_bgpo.models.llada.moe_reference import megatron_aux_loss, moe_reference_forward
from megatron_bgpo.models.llada.moe_sequence_parallel import allreduce_router_grads
from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
from megatron_bgpo.parallel.schedule import run_microbatches
from tests.distributed import run_distributed
from tests.models.rank_setup import toy_batch
from tests.models.test_llada_moe import _rel, moe_setup

SEQ, ROWS, COEF = 10, 4, 0.1
LAYOUTS = ((1, 1, 1, 1), (2, 2), (4,))  # rows per micro-batch


def _rows(cfg, seq: int):
    tokens, mask, targets = toy_batch(cfg, ROWS, seq, seed=41, pad_rows=2)
    gen = torch.Generator().manual_seed(5)
    selected = mask & (torch.rand(ROWS, seq, generator=gen) < 0.6)
    weights = torch.randn(ROWS, seq, generator=gen)
    return tokens, mask, targets, selected, weights


def _aux_rank(
    rank: int, world: int, coef: float, weight: float | None, seq: int = SEQ, ddp: bool = False
) -> dict:
    """World = TP (1 or 2): the model is trained TP-parallel, its MoE layer sequence-parallel inside.
    ``ddp``: wrapped in megatron DDP, gradients finalized by the schedule (parallel/ddp.py)."""
    cfg, chunks, hf, groups, _ = moe_setup(world, 1, 1, {"router_aux_loss_coef": coef})
    wrapped = wrap_ddp(chunks) if ddp else None
    model = wrapped[0] if ddp else chunks[0]
    tokens, mask, targets, selected, weights = _rows(cfg, seq)
    grads, errs = [], []
    for layout in LAYOUTS:
        bounds = torch.tensor((0, *layout)).cumsum(0).tolist()
        mbs = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        if ddp:
            zero_grads(wrapped)
        else:
            model.zero_grad(set_to_none=True)

        def step(sl, chunk):
            lp = llada_selected_logprobs(chunk, tokens[sl], mask[sl], targets[sl], selected[sl])
            return lp, lambda out, sl=sl: ((out * weights[sl]).sum(), torch.ones((), dtype=torch.int), {})

        run_microbatches(
            [model], step, mbs, seq_length=seq, micro_batch_size=max(layout), moe_aux_loss_weight=weight
        )
        if ddp:
            got = {n.removeprefix("module."): p.main_grad.clone() for n, p in model.named_parameters()}
        else:
            allreduce_router_grads([model])  # what parallel/ddp.py's finalize does (no-op at TP 1)
            got = {n: p.grad.clone() for n, p in model.named_parameters()}
        grads.append(got)

        # hand computation through the reference forward
        ref_w = {k: v.clone().requires_grad_() for k, v in hf.items()}
        w_mb = 1.0 / len(mbs) if weight is None else weight
        total = torch.zeros((), dtype=torch.float64)
        for sl in mbs:
            logits, router_logits = moe_reference_forward(ref_w, cfg, tokens[sl], mask[sl])
            lp = torch.log_softmax(logits, -1).gather(-1, targets[sl][..., None])[..., 0]
            total = total + (lp * weights[sl] * selected[sl]).sum()
            if coef:
                total = total + coef * w_mb * megatron_aux_loss(
                    router_logits, cfg.num_experts, cfg.num_experts_per_tok
                )
        total.backward()
        router = "decoder.layers.1.mlp.router.weight"
        expected = ref_w["model.layers.0.mlp.gate.weight"].grad
        errs.append(
            max(
                _rel(got[router], expected),
                _rel(
                    got["decoder.layers.0.input_layernorm.weight"],
                    ref_w["model.layers.0.input_layernorm.weight"].grad,
                ),
            )
        )
    spread = max(_rel(g[n], grads[0][n]) for g in grads[1:] for n in g)
    return {"errs": errs, "layout_spread": spread}


def test_aux_loss_gradient_matches_hand_computation() -> None:
    """coeff 0.1, per-micro-batch weight 1/num_microbatches: every layout's router and first-norm
    gradients equal the reference's main + aux gradient (fp32, 1e-5). The aux loss of a micro-batch
    depends on which rows it holds, so the three layouts' gradients differ (measured, > 1e-4)."""
    (r,) = run_distributed(_aux_rank, 1, COEF, None)
    assert max(r["errs"]) < 1e-5, r
    assert r["layout_spread"] > 1e-4, r


def test_explicit_aux_weight_is_used() -> None:
    (r,) = run_distributed(_aux_rank, 1, COEF, 0.3)
    assert max(r["errs"]) < 1e-5, r


def test_mc_microbatch_gradient_is_layout_invariant_without_aux_loss() -> None:
    """The RL default (router aux loss off): dropless routing is per token, so the accumulated gradient
    of the MC-sample rows is the same for 4x1, 2x2 and 1x4 micro-batches, and equals the reference's."""
    (r,) = run_distributed(_aux_rank, 1, 0.0, None)
    assert max(r["errs"]) < 1e-5, r
    assert r["layout_spread"] < 1e-5, r


@pytest.mark.parametrize("seq", [SEQ, SEQ - 1], ids=["even", "padded"])
@pytest.mark.parametrize("coef", [0.0, COEF], ids=["no-aux", "aux"])
def test_moe_trains_at_tp2(coef: float, seq: int) -> None:
    """Training-mode TP2 (the MoE layer sequence-parallel inside, a sequence length TP does not divide
    padded): router and first-norm gradients equal the reference's main (+ aux) gradient at 1e-5, and
    without the aux loss the MC micro-batch gradient stays layout-invariant."""
    results = run_distributed(_aux_rank, 2, coef, None, seq)
    for r in results:
        assert max(r["errs"]) < 1e-5, results
        if coef == 0.0:
            assert r["layout_spread"] < 1e-5, results


def test_moe_trains_at_tp2_under_ddp() -> None:
    """The same through megatron DDP and the schedule's finalize (parallel/ddp.py sums the routers over
    TP after megatron's finalize_model_grads): gradients equal the reference's at 1e-5."""
    results = run_distributed(_aux_rank, 2, 0.0, None, SEQ - 1, True)
    for r in results:
        assert max(r["errs"]) < 1e-5 and r["layout_spread"] < 1e-5, results
