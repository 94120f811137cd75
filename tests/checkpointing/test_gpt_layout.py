"""Checkpoints of the earlier GPTModel build load into the HybridModel build.

The reference is the GPTModel build itself (megatron-core's `GPTModel` with the same bidirectional
layer spec, as the project built LLaDA before the HybridModel move), kept here only to write such
checkpoints. It saves a training checkpoint (weights, Adam moments, scheduler) in the GPT layout
(layers stacked, ``final_layernorm``); the HybridModel build loads it and must give:

- bitwise the same logits (same process layout: the same kernels in the same order);
- bitwise the same weights after one more Adam step (moments and step count carried over);
- the same HF tensors on export as a checkpoint the HybridModel build wrote itself;
- at another layout (PP=2, the GPT checkpoint written at TP=2) logits equal within fp32 rounding.

The two builds are also initialised identically from the same seed (megatron's depth-scaled init of
the output projections is the same for n_layers GPT layers and 2 * n_layers hybrid sublayers).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.distributed import run_distributed

PRESET = "tiny-gqa"


def _gpt_chunks(cfg, parallel, pgs) -> list[torch.nn.Module]:
    """The GPTModel build of LLaDA (before the HybridModel move), one chunk, no virtual stages."""
    from megatron.core.models.gpt import GPTModel

    from megatron_bgpo.models.llada import to_transformer_config
    from megatron_bgpo.models.llada.layer_spec import llada_layer_spec

    tcfg = to_transformer_config(cfg, parallel, num_layers=cfg.n_layers, is_hybrid_model=False)
    model = GPTModel(
        config=tcfg,
        transformer_layer_spec=llada_layer_spec(False),
        vocab_size=cfg.embedding_size,
        max_sequence_length=cfg.max_sequence_length,
        pre_process=pgs.pp.rank() == 0,
        post_process=pgs.pp.rank() == pgs.pp.size() - 1,
        parallel_output=True,
        share_embeddings_and_output_weights=cfg.weight_tying,
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=int(cfg.rope_theta),
        pg_collection=pgs,
    )
    return [model]


def _inputs(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, cfg.vocab_size - 2, (3, 12), generator=gen)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[1, :4] = False  # one left-padded row
    return tokens, mask


def _full_logits(model, tokens, mask, groups) -> torch.Tensor | None:
    """Full-vocab logits [B, T, V] on the last stage (None elsewhere); forward only, no pipeline."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from megatron_bgpo.models.llada import llada_forward

    with torch.no_grad():
        out = llada_forward(model, tokens, mask)
    return gather_from_tensor_model_parallel_region(out, group=groups.tp) if groups.is_last_stage else None


def _train_step(model, optimizer, scheduler, tokens, mask) -> None:
    from megatron_bgpo.models.llada import llada_forward
    from megatron_bgpo.parallel.ddp import zero_grads

    zero_grads(model, optimizer)
    logits = llada_forward(model[0], tokens, mask)
    (logits.float().pow(2).mean() + logits[..., :7].float().mean()).backward()
    optimizer.step()
    scheduler.step(1)


def _hf_state(model, cfg) -> dict[tuple[str, int | None], torch.Tensor]:
    """Weights by (mapping, block): a layout-independent view (single-process chunks only)."""
    from megatron_bgpo.checkpointing.llada_mapping import iter_stage_tensors

    params = dict(model.named_parameters())
    return {(m.megatron, b): params[name].detach().clone() for name, m, b in iter_stage_tensors(model)}


def _gpt_names_to_hybrid(gpt_model) -> dict[tuple[str, int | None], torch.Tensor]:
    """The GPT build's weights keyed like `_hf_state` (GPT layer i holds both sublayers of block i)."""
    from megatron_bgpo.checkpointing.llada_mapping import MAPPINGS

    params = dict(gpt_model.named_parameters())
    out = {}
    for m in MAPPINGS:
        if m.per_layer:
            for name, p in params.items():
                prefix = "decoder.layers."
                if name.startswith(prefix) and name.split(".", 3)[3] == m.megatron:
                    out[(m.megatron, int(name.split(".")[2]))] = p.detach().clone()
        else:
            name = m.megatron.replace("decoder.final_norm.", "decoder.final_layernorm.")
            if name in params:
                out[(m.megatron, None)] = params[name].detach().clone()
    return out


def _setup(tp: int, pp: int):
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed

    parallel = ParallelConfig(tp, pp)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(1234)
    return get_preset(PRESET), parallel, groups


def _optimizer(model):
    from megatron_bgpo.training.config import OptimArgs
    from megatron_bgpo.training.optimizer import build_optimizer

    return build_optimizer(OptimArgs(lr=1e-2, clip_grad=0.0), model, torch.float32, train_steps=10)


def _save_gpt_rank(rank: int, world: int, root: str, tp: int) -> dict:
    from megatron.core import dist_checkpointing, parallel_state

    from megatron_bgpo.checkpointing.megatron_io import (
        TRACKER_FILE,
        SyncTorchDistSaveStrategy,
        iteration_dirname,
        write_atomic,
        write_manifest,
    )
    from megatron_bgpo.models.llada import build_model_chunks
    from megatron_bgpo.parallel import set_seed
    from megatron_bgpo.parallel.ddp import wrap_ddp
    from megatron_bgpo.training import checkpoint as ckpt

    cfg, parallel, groups = _setup(tp, 1)  # seeds, then builds at once: the same init as below
    model = wrap_ddp(_gpt_chunks(cfg, parallel, groups.pgs))
    out: dict = {"init_gpt": _gpt_names_to_hybrid(model[0].module)}
    optimizer, scheduler = _optimizer(model)
    tokens, mask = _inputs(cfg)
    _train_step(model, optimizer, scheduler, tokens, mask)
    folder = Path(root) / iteration_dirname(1)
    if rank == 0:
        folder.mkdir(parents=True)
    torch.distributed.barrier()
    state = ckpt._state(model, optimizer, scheduler, 1, is_loading=False, with_rng=True)
    dist_checkpointing.save(state, str(folder), sharded_strategy=SyncTorchDistSaveStrategy())
    write_manifest(Path(root), folder)
    if rank == 0:
        write_atomic(Path(root) / TRACKER_FILE, "1\n")
    out["logits"] = _full_logits(model[0], tokens, mask, groups)
    if world == 1:
        _train_step(model, optimizer, scheduler, tokens, mask)
        out["after_step2"] = _gpt_names_to_hybrid(model[0].module)
        set_seed(1234)
        out["init_hybrid"] = _hf_state(build_model_chunks(cfg, parallel, groups.pgs)[0], cfg)
    parallel_state.destroy_model_parallel()
    return out


def _load_hybrid_rank(rank: int, world: int, root: str, pp: int, resaved: str | None) -> dict:
    from megatron.core import parallel_state

    from megatron_bgpo.checkpointing.megatron_io import (
        checkpoint_layout,
        iteration_dirname,
        load_model_checkpoint,
        save_model_checkpoint,
    )
    from megatron_bgpo.models.llada import build_model_chunks
    from megatron_bgpo.parallel.ddp import wrap_ddp
    from megatron_bgpo.training import checkpoint as ckpt
    from megatron_bgpo.training.config import CheckpointArgs

    cfg, parallel, groups = _setup(1, pp)
    folder = Path(root) / iteration_dirname(1)
    model = wrap_ddp(build_model_chunks(cfg, parallel, groups.pgs))
    tokens, mask = _inputs(cfg)
    out: dict = {"layout": checkpoint_layout(folder)}
    if world == 1:  # a full resume (optimizer, scheduler) from the GPT-layout training checkpoint
        optimizer, scheduler = _optimizer(model)
        progress = ckpt.load(CheckpointArgs(load=root), model, optimizer, scheduler, folder)
        out["step"] = progress.step
        out["logits"] = _full_logits(model[0], tokens, mask, groups)
        save_model_checkpoint([m.module for m in model], resaved, config=cfg)
        _train_step(model, optimizer, scheduler, tokens, mask)
        out["after_step2"] = _hf_state(model[0].module, cfg)
    else:
        load_model_checkpoint([m.module for m in model], folder)
        if pp == 1:
            out["logits"] = _full_logits(model[0], tokens, mask, groups)
        else:
            out["logits"] = _pipeline_logits(model, tokens, mask, groups, cfg)
    parallel_state.destroy_model_parallel()
    return out


def _pipeline_logits(model, tokens, mask, groups, cfg) -> torch.Tensor | None:
    """Logits through the PP stages by the sampler denoiser (forward-only pipeline schedule)."""
    from megatron_bgpo.models.llada.denoiser import MegatronDenoiser

    denoiser = MegatronDenoiser(model, cfg, groups=groups)
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    with torch.no_grad():
        return denoiser(tokens, mask, positions)


def _export_rank(rank: int, world: int, gpt_root: str, hybrid_root: str) -> dict:
    from megatron_bgpo.checkpointing.llada_mapping import layers_of, model_mappings
    from megatron_bgpo.checkpointing.megatron_io import MegatronCheckpointReader
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.parallel import init_distributed

    init_distributed()
    cfg = get_preset(PRESET)
    readers = [MegatronCheckpointReader(p, cfg) for p in (gpt_root, hybrid_root)]
    for r in readers:
        r.check()
    diffs = {}
    for m in model_mappings(cfg):
        for layer in layers_of(m, cfg):
            a, b = (r.read(m, layer) for r in readers)
            diffs[(m.megatron, layer)] = float((a - b).abs().max())
    return {"layouts": [r.layout for r in readers], "diffs": diffs}


def test_gpt_checkpoint_resumes_in_hybrid_build_bitwise(tmp_path: Path) -> None:
    gpt_root, resaved = tmp_path / "gpt", tmp_path / "hybrid"
    (saved,) = run_distributed(_save_gpt_rank, 1, str(gpt_root), 1)
    assert saved["init_gpt"].keys() == saved["init_hybrid"].keys()
    for key, value in saved["init_gpt"].items():
        assert torch.equal(value, saved["init_hybrid"][key]), f"init differs: {key}"
    (loaded,) = run_distributed(_load_hybrid_rank, 1, str(gpt_root), 1, str(resaved))
    assert loaded["layout"] == "gpt" and loaded["step"] == 1
    assert torch.equal(loaded["logits"], saved["logits"])
    assert loaded["after_step2"].keys() == saved["after_step2"].keys()
    moved = 0.0
    for key, value in saved["after_step2"].items():
        assert torch.equal(loaded["after_step2"][key], value), f"weights after the resumed step differ: {key}"
        moved = max(moved, float((value - saved["init_gpt"][key]).abs().max()))
    assert moved > 1e-3  # the two Adam steps did move the weights
    (exported,) = run_distributed(_export_rank, 1, str(gpt_root), str(resaved))
    assert exported["layouts"] == ["gpt", "hybrid"]
    assert len(exported["diffs"]) == 3 + 6 * 4  # embedding, final norm, output layer + 6 per block x 4
    assert max(exported["diffs"].values()) == 0.0


def test_gpt_checkpoint_loads_at_another_layout(tmp_path: Path) -> None:
    gpt_root = tmp_path / "gpt_tp2"
    saved = run_distributed(_save_gpt_rank, 2, str(gpt_root), 2)
    loaded = run_distributed(_load_hybrid_rank, 2, str(gpt_root), 2, None)
    reference = saved[0]["logits"]
    last = loaded[1]["logits"]
    assert loaded[0]["layout"] == "gpt" and last is not None
    assert torch.allclose(last, reference, atol=1e-5, rtol=1e-5), float((last - reference).abs().max())
