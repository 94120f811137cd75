"""Layout invariance: the same seed gives the same tokens without TP, with the vocab split over 2
gloo ranks (even, uneven, padded vocab), through the pipeline broadcast, and with TP2 x PP2 (also with
row compaction); the vocab-parallel proposal (max / min-id / sum all-reduces, no gather) equals the
argmax and softmax confidence of the gathered logits, ties included."""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_bgpo.diffusion.sampler import PipelineComm, Prompts, SamplerConfig, _proposals, generate
from megatron_bgpo.diffusion.toy import ToyDenoiser
from megatron_bgpo.diffusion.vocab import VocabShard, token_logprobs
from tests.diffusion.reference import PaddedVocab, StageOnly, VocabSlice
from tests.distributed import run_distributed

V, MASK, EOS, PAD = 13, 12, 11, 0

CONFIGS = [
    dict(),
    dict(temperature=0.9, cfg_scale=0.7, suppress_eos=True),
    dict(temperature=1.2, remasking="random"),
    dict(temperature=0.7, threshold=0.2),
    dict(temperature=0.5, fill_after_eos=True, stop_ids=(3,)),
    dict(temperature=0.7, threshold=0.2, compact_rows=True, early_exit=True, cfg_scale=0.5),
]


def _in_gloo(body, rank, world_size, *args):
    """Run a rank body in a gloo group torn down here: the harness's fallback teardown imports
    megatron.core, which costs seconds per rank."""
    dist.init_process_group("gloo")
    try:
        return body(rank, world_size, *args)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def _setup():
    model = ToyDenoiser(V, d_model=32, n_layers=2, seed=4).eval()
    pr = Prompts.from_lists([[3, 4, 5, 6, 7], [8, 2], [1, 9, 10], [5]], pad_id=PAD).repeat_interleave(2)
    return model, pr


def _cfg(kw) -> SamplerConfig:
    return SamplerConfig(gen_length=12, steps=6, block_length=4, mask_id=MASK, eos_id=EOS, **kw)


def _outputs(out):
    return out.tokens.tolist(), out.trace.tolist(), out.lengths.tolist(), out.nfe


def _tp_rank(rank, world_size, *args):
    return _in_gloo(_tp_body, rank, world_size, *args)


def _tp_body(rank, world_size, split, n_pad):
    model, pr = _setup()
    full = PaddedVocab(model, n_pad) if n_pad else model
    total = V + n_pad
    single_shard = VocabShard(real_vocab_size=V if n_pad else None)
    start, end = (0, split) if rank == 0 else (split, total)
    shard = VocabShard(dist.group.WORLD, start, real_vocab_size=V if n_pad else None)
    res = []
    for kw in CONFIGS:
        cfg = _cfg(kw)
        ref = generate(full, pr, cfg, seed=9, vocab=single_shard)
        out = generate(VocabSlice(full, start, end), pr, cfg, seed=9, vocab=shard)
        res.append((_outputs(ref), _outputs(out)))
    # vocab-parallel token log-probs equal the full log_softmax
    x = torch.randint(0, V, (3, 7))
    logits = full(x, torch.ones_like(x, dtype=torch.bool), torch.arange(7).expand(3, 7))
    lp = token_logprobs(logits[..., start:end], x, shard)
    want = torch.log_softmax(logits[..., :V], -1).gather(-1, x[..., None])[..., 0]
    torch.testing.assert_close(lp, want, rtol=1e-5, atol=1e-5)
    return res


def _check(results):
    for rank_res in results:
        for ref, out in rank_res:
            assert ref == out
            toks = torch.tensor(out[0])
            assert (toks < V).all()  # padded ids never sampled
    all_toks = torch.tensor([out[0] for out in (o for _, o in results[0])])
    assert (all_toks < 4).any() and (all_toks >= 7).any()  # both shards' ids get sampled
    assert results[0] == results[1]


def test_tp2_even_split():
    _check(run_distributed(_tp_rank, 2, 7, 0))


def test_tp2_uneven_split_padded_vocab():
    _check(run_distributed(_tp_rank, 2, 4, 3))  # 16 = 13 real + 3 padding ids, split 4 / 12


def _pp_rank(rank, world_size, *args):
    return _in_gloo(_pp_body, rank, world_size, *args)


def _pp_body(rank, world_size):
    model, pr = _setup()
    pipe = PipelineComm(dist.group.WORLD, last_stage_rank=1)
    res = []
    for kw in CONFIGS:
        cfg = _cfg(kw)
        ref = generate(model, pr, cfg, seed=9)
        stage = StageOnly(model, is_last=rank == 1)
        out = generate(stage, pr, cfg, seed=9, pipeline=pipe)
        assert stage.calls == out.nfe
        res.append((_outputs(ref), _outputs(out)))
    return res


def test_pp2_broadcast():
    _check(run_distributed(_pp_rank, 2))


def _tp2pp2_rank(rank, world_size, *args):
    return _in_gloo(_tp2pp2_body, rank, world_size, *args)


def _tp2pp2_body(rank, world_size):
    model, pr = _setup()
    # ranks: pp stage = rank // 2, tp rank = rank % 2 (Megatron order: tp fastest)
    tp_groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    pp_groups = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    tp, stage = rank % 2, rank // 2
    start, end = (0, 7) if tp == 0 else (7, V)
    shard = VocabShard(tp_groups[stage], start)
    pipe = PipelineComm(pp_groups[tp], last_stage_rank=2 + tp)
    cfg = _cfg(dict(temperature=0.8, cfg_scale=0.5, threshold=0.3))
    ref = generate(model, pr, cfg, seed=1)
    out = generate(
        StageOnly(VocabSlice(model, start, end), is_last=stage == 1),
        pr,
        cfg,
        seed=1,
        vocab=shard,
        pipeline=pipe,
    )
    return [(_outputs(ref), _outputs(out))]


def test_tp2_pp2():
    results = run_distributed(_tp2pp2_rank, 4)
    for r in results:
        assert r == results[0]
        assert r[0][0] == r[0][1]


def _proposal_rank(rank, world_size):
    return _in_gloo(_proposal_body, rank, world_size)


def _proposal_body(rank, world_size):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, V, generator=gen, dtype=torch.float64).float()
    logits[0, :, 2] = logits[0, :, 9] = 10.0  # a tie across the shards: the lower id wins
    logits[1, :, 7] = logits[1, :, 8] = 10.0  # a tie inside shard 1
    start, end = (0, 6) if rank == 0 else (6, V)
    shard = VocabShard(dist.group.WORLD, start)
    cfg = _cfg({})
    rows, positions = torch.arange(3), torch.arange(5)
    x0, conf = _proposals(logits[..., start:end].clone(), None, cfg, shard, 0, rows, positions, 0)
    full = logits.double()
    full[..., MASK] = float("-inf")
    want_x0 = full.argmax(-1)  # first maximum = lowest id
    want_conf = torch.softmax(full, -1).gather(-1, want_x0[..., None])[..., 0]
    assert torch.equal(x0, want_x0), (x0, want_x0)
    torch.testing.assert_close(conf, want_conf, rtol=1e-12, atol=1e-12)
    return x0[0, 0].item(), x0[1, 0].item()


def test_tp2_proposal_equals_gathered_argmax_and_confidence():
    assert run_distributed(_proposal_rank, 2) == [(2, 7), (2, 7)]
