"""LLaDA on megatron-core vs the independent reference forward, under TP / PP / TP x PP (gloo ranks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megatron_bgpo.checkpointing.mappings.base import (
    dict_reader,
    hf_prefix,
    iter_stage_tensors,
    read_local,
    stage_mappings,
)
from megatron_bgpo.models.llada import llada_forward
from megatron_bgpo.models.llada.model import llada_selected_logprobs
from megatron_bgpo.models.llada.reference import reference_forward
from megatron_bgpo.models.logprobs import selected_token_logprobs, token_logprobs
from megatron_bgpo.parallel.schedule import run_microbatches
from tests.distributed import run_distributed
from tests.models.rank_setup import setup_rank, toy_batch

SEQ, BATCH = 12, 2


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _token_weights(num_mb: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(BATCH, SEQ, generator=gen) for _ in range(num_mb)]


def _layout_rank(
    rank: int, world: int, tp: int, pp: int, num_mb: int, preset: str, chunk_rows: int | None = None
) -> dict:
    """Forward + backward of a weighted log-prob loss through the schedule; compare with the oracle.
    ``chunk_rows``: log-probs from `llada_selected_logprobs` (the policy update's path: output layer on
    the selected positions only, in chunks with recomputation) instead of full logits."""
    s = setup_rank(tp, pp, preset=preset)
    batches = [toy_batch(s.cfg, BATCH, SEQ, seed=100 + i) for i in range(num_mb)]
    weights = _token_weights(num_mb)
    microbatches = list(zip(batches, weights, strict=True))

    def step(mb, model):
        (tokens, mask, targets), w = mb
        if chunk_rows is not None:
            output = llada_selected_logprobs(model, tokens, mask, targets, mask, s.tp_group, chunk_rows)
            return output, lambda lp: ((lp * w).sum(), torch.tensor(1), {"lp": lp.detach().clone()})
        output = llada_forward(model, tokens, mask)

        def loss_fn(logits):
            lp = selected_token_logprobs(logits, targets, mask, s.tp_group)
            return (lp * w).sum(), torch.tensor(1), {"logits": logits.detach().clone()}

        return output, loss_fn

    reported = run_microbatches(s.chunks, step, microbatches, seq_length=SEQ, micro_batch_size=BATCH)

    # Oracle: the reference forward on the HF weights, autograd for the HF-layout gradients.
    ref_weights = {k: v.clone().requires_grad_() for k, v in s.weights.items()}
    total = torch.zeros(())
    ref_logits, ref_lp = [], []
    for (tokens, mask, targets), w in microbatches:
        logits = reference_forward(ref_weights, s.cfg, tokens, mask)
        ref_logits.append(logits.detach())
        lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
        ref_lp.append((lp * mask).detach())
        total = total + (lp * w * mask).sum()
    total.backward()
    ref_grads = {k: v.grad for k, v in ref_weights.items()}

    grad_err = 0.0
    # Tied embeddings under PP: each stage's copy holds its part of the gradient until megatron's embedding
    # group all-reduce (finalize_model_grads, not run here); tests/models/test_illada.py checks that sum.
    split_tied = s.cfg.weight_tying and s.pp_size > 1
    tied = ("embedding.word_embeddings.weight", "output_layer.weight")
    for chunk in s.chunks:
        params = dict(chunk.named_parameters())
        for name, m, layer in iter_stage_tensors(chunk, stage_mappings(s.cfg)):
            if split_tied and name in tied:
                continue
            reader = dict_reader(ref_grads, hf_prefix(s.cfg))
            expected = read_local(m, s.cfg, layer, reader, s.tp_rank, s.tp_size)
            grad_err = max(grad_err, _rel(params[name].grad, expected))
    logit_err = None
    if s.is_last_stage and chunk_rows is not None:
        logit_err = max(_rel(out["lp"], ref) for out, ref in zip(reported, ref_lp, strict=True))
    elif s.is_last_stage:
        v = s.cfg.embedding_size // s.tp_size
        logit_err = max(
            _rel(out["logits"], ref[..., s.tp_rank * v : (s.tp_rank + 1) * v])
            for out, ref in zip(reported, ref_logits, strict=True)
        )
    return {"grad_err": grad_err, "logit_err": logit_err}


@pytest.mark.parametrize(
    "tp,pp,num_mb,preset",
    [
        (1, 1, 2, "tiny"),
        (1, 1, 2, "tiny-gqa"),
        (2, 1, 2, "tiny-gqa"),
        (1, 2, 4, "tiny"),
        (2, 2, 4, "tiny-gqa"),
    ],
)
def test_logits_and_grads_match_reference(tp: int, pp: int, num_mb: int, preset: str) -> None:
    results = run_distributed(_layout_rank, tp * pp, tp, pp, num_mb, preset)
    assert max(r["grad_err"] for r in results) < 1e-5, results
    logit_errs = [r["logit_err"] for r in results if r["logit_err"] is not None]
    assert len(logit_errs) == tp  # every TP rank of the last stage reports its vocab shard
    assert max(logit_errs) < 1e-5, results


@pytest.mark.parametrize("tp,pp,chunk_rows", [(1, 1, 5), (2, 1, 3), (1, 2, 0), (2, 2, 7)])
def test_chunked_selected_logprobs_match_reference(tp: int, pp: int, chunk_rows: int) -> None:
    """The policy update's log-prob path (selected positions only, chunks recomputed in backward):
    values and gradients equal the reference forward's at every layout and chunk size."""
    results = run_distributed(_layout_rank, tp * pp, tp, pp, 2, "tiny-gqa", chunk_rows)
    assert max(r["grad_err"] for r in results) < 1e-5, results
    lp_errs = [r["logit_err"] for r in results if r["logit_err"] is not None]
    assert len(lp_errs) == tp and max(lp_errs) < 1e-5, results


def _bidirectional_rank(rank: int, world: int) -> dict:
    s = setup_rank(1, 1, preset="tiny")
    model = s.chunks[0]
    tokens, _, _ = toy_batch(s.cfg, 1, SEQ, seed=5, pad_rows=0)
    changed = tokens.clone()
    changed[0, SEQ - 1] = (changed[0, SEQ - 1] + 1) % s.cfg.vocab_size
    with torch.no_grad():
        a = llada_forward(model, tokens)
        b = llada_forward(model, changed)
        # Left padding: a row padded by 3 positions gives the same logits on its real tokens
        # (RoPE is relative).
        padded = torch.cat([torch.full((1, 3), s.cfg.pad_token_id), tokens], dim=1)
        mask = torch.ones_like(padded, dtype=torch.bool)
        mask[0, :3] = False
        c = llada_forward(model, padded, mask)
    return {
        "first_position_change": (a[0, 0] - b[0, 0]).abs().max().item(),
        "padding_err": _rel(c[0, 3:], a[0]),
    }


def test_attention_is_bidirectional_and_padding_invariant() -> None:
    (r,) = run_distributed(_bidirectional_rank, 1)
    assert r["first_position_change"] > 1e-4, (
        "changing the last token must change the first position's logits"
    )
    assert r["padding_err"] < 1e-5


def _logprob_rank(rank: int, world: int) -> float:
    s = setup_rank(world, 1, preset="tiny")
    gen = torch.Generator().manual_seed(11)
    logits = 3 * torch.randn(5, 7, s.cfg.embedding_size, generator=gen)
    targets = torch.randint(0, s.cfg.embedding_size, (5, 7), generator=gen)
    v = s.cfg.embedding_size // world
    shard = logits[..., rank * v : (rank + 1) * v].clone()
    got = token_logprobs(shard, targets, s.tp_group)
    expected = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    return _rel(got, expected)


def test_vocab_parallel_logprobs_equal_log_softmax() -> None:
    assert max(run_distributed(_logprob_rank, 2)) < 1e-6


def test_selected_logprobs_zero_outside_selection() -> None:
    logits = torch.randn(2, 4, 10)
    targets = torch.randint(0, 10, (2, 4))
    positions = torch.tensor([[True, False, True, False], [False, False, False, True]])
    import torch.distributed as dist

    from tests.distributed import free_port

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        got = selected_token_logprobs(logits, targets, positions, dist.group.WORLD)
    finally:
        dist.destroy_process_group()
    expected = F.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0] * positions
    torch.testing.assert_close(got, expected)
