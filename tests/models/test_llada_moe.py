"""LLaDA-MoE on megatron-core (MoE layer, QK-norm, dense + MoE blocks) vs the independent reference forward
(models/llada/moe_reference.py): single process and EP2 / TP2 / PP2 / TP2 x EP2 on gloo ranks."""

from __future__ import annotations

import pytest
import torch

from megatron_bgpo.checkpointing.llada_mapping import dict_reader
from megatron_bgpo.checkpointing.mappings.llada_moe import (
    iter_moe_stage_tensors,
    load_hf_moe_into_model,
    read_moe_local,
)
from megatron_bgpo.models.llada import LLaDAConfig, build_model_chunks, get_preset, llada_forward
from megatron_bgpo.models.llada.moe import moe_config_from_hf
from megatron_bgpo.models.llada.moe_reference import moe_reference_forward, random_hf_moe_weights
from megatron_bgpo.models.llada.moe_sequence_parallel import allreduce_router_grads
from megatron_bgpo.models.logprobs import selected_token_logprobs
from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
from megatron_bgpo.parallel.schedule import run_microbatches
from tests.distributed import run_distributed
from tests.models.rank_setup import toy_batch

SEQ, BATCH = 10, 2
# Dense first block, MoE second, a shared expert: every kind of tensor the mapping has.
MIXED = {"moe_layer_freq": (0, 1), "shared_expert_intermediate_size": 32}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def moe_setup(tp: int, pp: int, ep: int, cfg_changes: dict | None = None, seed: int = 3):
    parallel = ParallelConfig(tp, pp, expert_model_parallel_size=ep)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(1234)
    cfg = get_preset("tiny-moe").replace(**(cfg_changes or {}))
    chunks = build_model_chunks(cfg, parallel, groups.pgs)
    weights = random_hf_moe_weights(cfg, seed=seed)
    ep_rank = torch.distributed.get_rank(groups.pgs.ep)
    for chunk in chunks:
        load_hf_moe_into_model(chunk, cfg, dict_reader(weights), groups.tp_rank, tp, ep_rank, ep)
    return cfg, chunks, weights, groups, ep_rank


def _layout_rank(rank: int, world: int, tp: int, pp: int, ep: int, cfg_changes: dict, num_mb: int) -> dict:
    """Forward + backward of a weighted log-prob loss through the schedule at (tp, pp, ep); the data-
    parallel ranks (world / (tp pp)) get different micro-batches. Without DDP, dense parameters hold the
    gradient of this rank's loss; expert parameters, which every EP rank's tokens reach through the
    all-to-all, that of the sum of all data-parallel ranks' losses (EP = DP in these layouts)."""
    cfg, chunks, weights, groups, ep_rank = moe_setup(tp, pp, ep, cfg_changes)
    dp_rank, dp = groups.dp_rank, groups.dp_size

    def data(d: int):
        gen = torch.Generator().manual_seed(17 + d)
        mbs = [toy_batch(cfg, BATCH, SEQ, seed=100 + 10 * d + i) for i in range(num_mb)]
        return [(b, torch.randn(BATCH, SEQ, generator=gen)) for b in mbs]

    tp_group = groups.tp_group_or_none

    def step(mb, model):
        (tokens, mask, targets), w = mb
        output = llada_forward(model, tokens, mask)

        def loss_fn(logits):
            lp = selected_token_logprobs(logits, targets, mask, tp_group)
            return (lp * w).sum(), torch.tensor(1), {"logits": logits.detach().clone()}

        return output, loss_fn

    reported = run_microbatches(chunks, step, data(dp_rank), seq_length=SEQ, micro_batch_size=BATCH)
    # what parallel/ddp.py's finalize adds to megatron's: the TP sum of the (sequence-parallel) routers
    routers = allreduce_router_grads(chunks)

    def ref_grads(replicas: list[int]):
        ref_w = {k: v.clone().requires_grad_() for k, v in weights.items()}
        total, logits_out = torch.zeros(()), []
        for d in replicas:
            for (tokens, mask, targets), w in data(d):
                logits, _ = moe_reference_forward(ref_w, cfg, tokens, mask)
                logits_out.append(logits.detach())
                lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
                total = total + (lp * w * mask).sum()
        total.backward()
        return {k: v.grad for k, v in ref_w.items()}, logits_out

    own, own_logits = ref_grads([dp_rank])
    every, _ = ref_grads(list(range(dp)))
    grad_err, expert_tensors = 0.0, 0
    for chunk in chunks:
        params = dict(chunk.named_parameters())
        for name, m, layer, expert in iter_moe_stage_tensors(chunk, cfg, ep_rank, ep):
            source = every if m.per_expert else own
            expected = read_moe_local(m, cfg, layer, dict_reader(source), groups.tp_rank, tp, expert)
            grad = params[name].grad.clone()
            if ("q_layernorm." in name or "k_layernorm." in name) and tp > 1:
                # each TP rank holds the q/k-norm gradient of its heads; megatron's finalize_model_grads
                # (_allreduce_non_tensor_model_parallel_grads) sums them over TP
                torch.distributed.all_reduce(grad, group=groups.tp)
            grad_err = max(grad_err, _rel(grad, expected))
            expert_tensors += m.per_expert
    logit_err = None
    if groups.is_last_stage:
        v = cfg.embedding_size // tp
        r = groups.tp_rank
        logit_err = max(
            _rel(out["logits"], ref[..., r * v : (r + 1) * v])
            for out, ref in zip(reported, own_logits, strict=True)
        )
    return {
        "grad_err": grad_err,
        "logit_err": logit_err,
        "expert_tensors": expert_tensors,
        "routers": routers,
        "training": all(chunk.training for chunk in chunks),
    }


@pytest.mark.parametrize(
    "tp,pp,ep,world",
    [(1, 1, 1, 1), (1, 1, 2, 2), (2, 1, 1, 2), (1, 2, 1, 2), (2, 1, 2, 4)],
    ids=["single", "ep2", "tp2", "pp2", "tp2-ep2"],
)
def test_moe_logits_and_grads_match_reference(tp: int, pp: int, ep: int, world: int) -> None:
    """fp32, 1e-5: logits (vocab shard per TP rank) and every gradient equal the plain-PyTorch forward's."""
    results = run_distributed(_layout_rank, world, tp, pp, ep, MIXED, 2)
    assert max(r["grad_err"] for r in results) < 1e-5, results
    logit_errs = [r["logit_err"] for r in results if r["logit_err"] is not None]
    assert len(logit_errs) == world // pp and max(logit_errs) < 1e-5, results
    # each rank holds 4 / ep experts x 2 tensors in the one MoE block (cannot pass by holding none)
    held = [r["expert_tensors"] for r in results if r["expert_tensors"]]
    assert held and all(h == 2 * 4 // ep for h in held), results
    assert all(r["training"] for r in results), results
    # one MoE block: its router is summed over TP only when it runs sequence-parallel (TP > 1)
    assert all(r["routers"] == (1 if tp > 1 else 0) for r in results), results


def test_all_moe_preset_matches_reference() -> None:
    """The tiny-moe preset as is (every block MoE, no shared expert), EP2."""
    results = run_distributed(_layout_rank, 2, 1, 1, 2, {}, 1)
    assert max(r["grad_err"] for r in results) < 1e-5, results
    assert max(r["logit_err"] for r in results) < 1e-5, results


def _routing_rank(rank: int, world: int) -> dict:
    """The router is the published one: a single token's MoE output equals the top-k softmax weights
    (not renormalised) times the chosen experts, checked by perturbing the router towards one expert."""
    cfg, chunks, weights, _, _ = moe_setup(1, 1, 1)
    tokens, mask, _ = toy_batch(cfg, BATCH, SEQ, seed=9)
    with torch.no_grad():
        out = llada_forward(chunks[0], tokens, mask)
        ref, router_logits = moe_reference_forward(weights, cfg, tokens, mask)
        # the same reference with top-k weights renormalised would differ (the test can tell them apart)
        probs = torch.softmax(router_logits[0], -1)
        topk = probs.topk(cfg.num_experts_per_tok, -1).values.sum(-1)
    return {"err": _rel(out, ref), "min_topk_mass": topk.min().item(), "max_topk_mass": topk.max().item()}


def test_router_weights_are_not_renormalised() -> None:
    (r,) = run_distributed(_routing_rank, 1)
    assert r["err"] < 1e-5, r
    assert r["min_topk_mass"] < 0.9, r  # renormalising would rescale such tokens by > 1.1: detectable


def test_moe_config_validation_errors() -> None:
    base = get_preset("tiny")
    with pytest.raises(ValueError, match="num_experts=0"):
        base.replace(num_experts_per_tok=2)
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        base.replace(num_experts=4, num_experts_per_tok=5, expert_intermediate_size=8)
    with pytest.raises(ValueError, match="expert_intermediate_size"):
        base.replace(num_experts=4, num_experts_per_tok=2)
    with pytest.raises(ValueError, match="moe_layer_freq"):
        get_preset("tiny-moe").replace(moe_layer_freq=(1, 0, 1))
    with pytest.raises(ValueError, match="does not divide num_experts"):
        from megatron_bgpo.models.llada import validate_layout

        validate_layout(get_preset("tiny-moe"), ParallelConfig(expert_model_parallel_size=3))
    # a dense config.json export is unchanged by the MoE fields
    assert "num_experts" not in base.to_dict()
    assert get_preset("tiny-moe").to_dict()["num_experts"] == 4


def _hf_config(**changes) -> dict:
    data = {
        "model_type": "lladamoe",
        "architectures": ["LLaDAMoEModelLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 256,
        "dense_intermediate_size": 128,
        "expert_intermediate_size": 32,
        "shared_expert_intermediate_size": None,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_layer_freq": [0, 1],
        "qk_layernorm": True,
        "rope_theta": 50000,
        "max_position_embeddings": 256,
        "router_aux_loss_coef": 0.01,
        "mask_token_id": 250,
        "eos_token_id": 251,
        "pad_token_id": 251,
        "norm_topk_prob": False,
    }
    data.update(changes)
    return data


def test_hf_config_parsing() -> None:
    cfg = moe_config_from_hf(_hf_config())
    assert isinstance(cfg, LLaDAConfig)
    assert (cfg.num_experts, cfg.num_experts_per_tok, cfg.expert_intermediate_size) == (4, 2, 32)
    assert cfg.moe_blocks() == (False, True) and cfg.mlp_hidden_size == 128 and cfg.qk_layernorm
    assert cfg.shared_expert_intermediate_size == 0 and cfg.rope_theta == 50000.0
    assert cfg.router_aux_loss_coef == 0.0 and cfg.extra["hf_router_aux_loss_coef"] == 0.01
    assert moe_config_from_hf(_hf_config(moe_layer_freq=[1, 1])).moe_layer_freq == ()
    with pytest.raises(ValueError, match="moe_router_enable_expert_bias"):
        moe_config_from_hf(_hf_config(moe_router_enable_expert_bias=True))
    with pytest.raises(ValueError, match="missing required"):
        moe_config_from_hf(_hf_config(num_experts_per_tok=-1))
    with pytest.raises(ValueError, match="not an LLaDA-MoE config"):
        moe_config_from_hf({"model_type": "llama"})


def test_mapping_rejects_mismatched_shapes() -> None:
    def rank(r: int, w: int) -> str:
        cfg, chunks, weights, _, _ = moe_setup(1, 1, 1, MIXED)
        bad = dict(weights)
        name = "model.layers.1.mlp.experts.2.up_proj.weight"
        bad[name] = bad[name][:, :-1]
        try:
            load_hf_moe_into_model(chunks[0], cfg, dict_reader(bad))
        except ValueError as exc:
            return str(exc)
        return ""

    (msg,) = run_distributed(rank, 1)
    assert "shape mismatch" in msg and "experts.2" in msg, msg


def _roundtrip_rank(rank: int, world: int, pp: int, ep: int) -> dict:
    from megatron_bgpo.checkpointing.mappings.llada_moe import export_stage_hf

    cfg, chunks, weights, groups, ep_rank = moe_setup(1, pp, ep, MIXED)
    return {k: v.clone() for c in chunks for k, v in export_stage_hf(c, cfg, ep_rank, ep).items()}


@pytest.mark.parametrize("pp,ep", [(1, 1), (1, 2), (2, 1)])
def test_hf_mapping_round_trip_is_bit_exact(pp: int, ep: int) -> None:
    """HF -> Megatron (each rank its stage / experts) -> HF: the union of the ranks' exports is the
    original checkpoint, tensor for tensor, bit for bit (and every HF tensor is covered)."""
    cfg = get_preset("tiny-moe").replace(**MIXED)
    original = random_hf_moe_weights(cfg, seed=3)
    merged: dict[str, torch.Tensor] = {}
    for part in run_distributed(_roundtrip_rank, pp * ep, pp, ep):
        merged.update(part)
    assert sorted(merged) == sorted(original)
    assert all(torch.equal(merged[k], original[k]) for k in original)


def test_num_parameters_counts_every_expert() -> None:
    def rank(r: int, w: int) -> tuple[int, int]:
        cfg, chunks, _, _, _ = moe_setup(1, 1, 1, MIXED)
        return cfg.num_parameters, sum(p.numel() for p in chunks[0].parameters())

    (counted, built) = run_distributed(rank, 1)[0]
    assert counted == built
