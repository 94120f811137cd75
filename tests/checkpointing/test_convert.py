"""HF -> Megatron (TP/PP) -> HF round trips, logits parity, resharding on load, save/load API (gloo ranks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megatron_bgpo.checkpointing.convert import export_hf, import_hf
from megatron_bgpo.checkpointing.hf_io import INDEX_FILE, CheckpointError, HFCheckpoint
from megatron_bgpo.checkpointing.llada_mapping import iter_stage_tensors, read_local
from megatron_bgpo.checkpointing.megatron_io import (
    TRACKER_FILE,
    load_model_checkpoint,
    read_checkpoint_config,
    save_model_checkpoint,
)
from megatron_bgpo.models.llada import build_model_chunks, llada_forward
from megatron_bgpo.models.llada.reference import reference_forward
from megatron_bgpo.parallel import ParallelConfig, init_distributed, initialize_model_parallel, set_seed
from tests.checkpointing.conftest import PRESETS, SHARD_SIZE
from tests.distributed import run_distributed

MAPPED_TENSORS_PER_TP_RANK = 6 * 4 + 3  # six per layer x 4 layers + embedding, final norm, head


def _import_rank(rank: int, world: int, tp: int, pp: int, jobs: list[tuple[Path, Path]]) -> list[dict]:
    init_distributed()
    return [import_hf(hf, out, tp, pp, verify=True) for hf, out in jobs]


def _export_rank(rank: int, world: int, jobs: list[tuple[Path, Path]]) -> list[dict]:
    init_distributed()
    return [export_hf(mg, out, shard_size=SHARD_SIZE, verify=True) for mg, out in jobs]


def assert_same_hf_folder(src: Path, out: Path) -> None:
    """Every tensor bit-exact, same by-type shard layout and index, config and side files kept."""
    src_index = json.loads((src / INDEX_FILE).read_text())
    out_index = json.loads((out / INDEX_FILE).read_text())
    assert out_index == src_index
    for file in sorted(set(src_index["weight_map"].values())):
        a, b = load_file(src / file), load_file(out / file)
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert json.loads((out / "config.json").read_text()) == json.loads((src / "config.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    for path in src.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_round_trip_bit_exact_with_logit_parity(tp: int, pp: int, hf_ckpts: dict[str, Path], tmp_path: Path):
    jobs = [(hf_ckpts[p], tmp_path / f"{p}-megatron") for p in PRESETS]  # MHA and GQA
    reports = run_distributed(_import_rank, tp * pp, tp, pp, jobs)
    for rank_reports in reports:
        for report in rank_reports:
            verify = report["verify"]
            assert verify["tensor_mismatches"] == 0
            assert verify["tensors_checked"] == tp * MAPPED_TENSORS_PER_TP_RANK
            assert verify["logits_rel_err"] < 1e-5, report
    for _, megatron in jobs:
        assert (megatron / TRACKER_FILE).read_text().strip() == "release"
        assert (megatron / "release" / "metadata.json").is_file()
        assert (megatron / "tokenizer" / "tokenizer_config.json").is_file()
        assert (megatron / "hf_files" / "modeling_llada.py").is_file()
        assert not list(tmp_path.glob(".*"))  # no staging folder left

    exports = [(megatron, tmp_path / f"{p}-hf") for p, (_, megatron) in zip(PRESETS, jobs, strict=True)]
    (reports,) = run_distributed(_export_rank, 1, exports)
    assert all(r["verify"]["tensor_mismatches"] == 0 for r in reports)
    for (src, _), (_, out) in zip(jobs, exports, strict=True):
        assert_same_hf_folder(src, out)


def _reshard_rank(rank: int, world: int, hf_dir: Path, megatron: Path, resaved: Path) -> dict:
    """Import at TP2PP2 happened elsewhere; load it at TP1PP1, compare weights and logits, save/load again."""
    init_distributed()
    parallel = ParallelConfig(1, 1)
    pgs = initialize_model_parallel(parallel)
    set_seed(7)
    cfg = read_checkpoint_config(megatron)
    chunks = build_model_chunks(cfg, parallel, pgs)  # randomly initialised, then overwritten
    iteration = load_model_checkpoint(chunks, megatron)
    hf = HFCheckpoint(hf_dir)
    params = dict(chunks[0].named_parameters())
    stage = list(iter_stage_tensors(chunks[0]))
    mismatched = [
        n for n, m, layer in stage if not torch.equal(params[n], read_local(m, cfg, layer, hf.reader()))
    ]
    weights = {name: hf.read(name) for name in hf.tensors}
    tokens = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, ref = llada_forward(chunks[0], tokens), reference_forward(weights, cfg, tokens)
    # save_model_checkpoint / load_model_checkpoint with an iteration number (trainer-style folder).
    save_model_checkpoint(chunks, resaved, iteration=5, config=cfg)
    for p in chunks[0].parameters():
        p.data.zero_()
    iteration_again = load_model_checkpoint(chunks, resaved)
    reloaded_equal = all(
        torch.equal(params[n], read_local(m, cfg, layer, hf.reader())) for n, m, layer in stage
    )
    # A model of another architecture gets a clear error naming the tensor.
    other = build_model_chunks(cfg.replace(mlp_hidden_size=96), parallel, pgs)
    try:
        load_model_checkpoint(other, resaved)
        shape_error = None
    except CheckpointError as exc:
        shape_error = str(exc)
    # A checkpoint without hf_files/ (a training run's) takes the modeling code from --hf-files-from.
    export_hf(resaved, resaved.parent / "exported", hf_files_from=hf_dir)
    return {
        "iteration": iteration,
        "checked": len(stage),
        "mismatched": mismatched,
        "logits_rel_err": ((got - ref).abs().max() / ref.abs().max()).item(),
        "iteration_again": iteration_again,
        "reloaded_equal": reloaded_equal,
        "shape_error": shape_error,
    }


def test_import_tp2pp2_load_tp1pp1_identical(hf_ckpts: dict[str, Path], tmp_path: Path) -> None:
    hf_dir, megatron = hf_ckpts["tiny-gqa"], tmp_path / "tp2pp2"
    run_distributed(_import_rank_plain, 4, 2, 2, hf_dir, megatron)
    (r,) = run_distributed(_reshard_rank, 1, hf_dir, megatron, tmp_path / "resaved")
    assert r["iteration"] == 0 and r["checked"] == MAPPED_TENSORS_PER_TP_RANK
    assert r["mismatched"] == []
    assert r["logits_rel_err"] < 1e-5
    assert r["iteration_again"] == 5 and r["reloaded_equal"]
    expect = "layers.1.mlp.linear_fc2.weight has global shape [64, 128], the model expects [64, 96]"
    assert expect in r["shape_error"]
    assert (tmp_path / "resaved" / TRACKER_FILE).read_text().strip() == "5"
    assert (tmp_path / "resaved" / "iter_0000005" / "metadata.json").is_file()
    exported = HFCheckpoint(tmp_path / "exported")
    source = HFCheckpoint(hf_dir)
    assert sorted(exported.tensors) == sorted(source.tensors)
    assert all(torch.equal(exported.read(n), source.read(n)) for n in source.tensors)
    assert (tmp_path / "exported" / "modeling_llada.py").read_bytes() == (
        hf_dir / "modeling_llada.py"
    ).read_bytes()
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["auto_map"]["AutoModel"]


def _import_rank_plain(rank: int, world: int, tp: int, pp: int, hf_dir: Path, out: Path) -> dict:
    init_distributed()
    return import_hf(hf_dir, out, tp, pp)
