"""Every conversion error names its cause and leaves no partial output (all cases in one forked rank)."""

from __future__ import annotations

import json
import re
import shutil
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from megatron_bgpo.checkpointing.convert import export_hf, import_hf
from megatron_bgpo.checkpointing.hf_io import INDEX_FILE, CheckpointError
from megatron_bgpo.parallel import init_distributed
from tests.distributed import run_distributed


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _shard(folder: Path, i: int) -> Path:
    return sorted(folder.glob("model-*.safetensors"))[i]


def _remap_to_missing_file(folder: Path) -> None:
    def edit(index: dict) -> None:
        index["weight_map"]["model.transformer.blocks.2.up_proj.weight"] = "model-00009-of-00009.safetensors"

    _edit_json(folder / INDEX_FILE, edit)


def _truncate(folder: Path) -> None:
    shard = _shard(folder, 2)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])


def _drop_tensor(folder: Path) -> None:
    _edit_json(
        folder / INDEX_FILE, lambda index: index["weight_map"].pop("model.transformer.blocks.1.v_proj.weight")
    )


def _add_llada_tokenizer(folder: Path) -> None:
    from tests.tokenizer.conftest import build_llada_like_hf_dir

    build_llada_like_hf_dir(folder)  # ids up to 126348; the tiny model embeds 256


@dataclass(frozen=True)
class Case:
    name: str
    expect: str
    mutate: Callable[[Path], None] | None = None
    export: bool = False
    tp: int = 1
    no_disk: bool = False
    existing_out: bool = False


CASES = (
    Case("missing_shard", "missing shard: .* names model-00002-of-00004.safetensors, which is not in",
         lambda d: _shard(d, 1).unlink()),
    Case("index_names_missing_file", "missing shard: .* names model-00009-of-00009.safetensors, which is not",
         _remap_to_missing_file),
    Case("truncated_shard", "truncated shard .*model-00003-of-00004.safetensors", _truncate),
    Case("tensor_missing", "tensor missing: model.transformer.blocks.1.v_proj.weight", _drop_tensor),
    Case("shape_mismatch", r"shape mismatch: model.transformer.blocks.0.ff_proj.weight .* \[128, 64\], "
         r"config.json implies \[96, 64\]",
         lambda d: _edit_json(d / "config.json", lambda c: c.update(mlp_hidden_size=96))),
    Case("vocab_mismatch_config", "vocab mismatch: model.transformer.wte.weight has 256 rows .*size=320",
         lambda d: _edit_json(d / "config.json", lambda c: c.update(vocab_size=320, embedding_size=320))),
    Case("vocab_mismatch_tokenizer", "vocab mismatch between tokenizer and model", _add_llada_tokenizer),
    Case("unknown_architecture", "unknown architecture model_type='llama'",
         lambda d: _edit_json(d / "config.json", lambda c: c.update(model_type="llama"))),
    Case("tp_not_dividing_heads", "TP=3 .*tensor_model_parallel_size=3 does not divide n_heads=4", tp=3),
    Case("output_exists", "already exists; pass --overwrite", existing_out=True),
    Case("not_enough_disk", r"not enough disk space .*: need about 7\d\d\.\d KB, 4.1 KB free", no_disk=True),
    Case("export_output_exists", "already exists; pass --overwrite", export=True, existing_out=True),
    Case("export_not_enough_disk", "not enough disk space", export=True, no_disk=True),
    Case("export_not_a_checkpoint", "not a Megatron checkpoint",
         lambda d: (d / "latest_checkpointed_iteration.txt").unlink(), export=True),
    Case("export_config_edited", r"release is damaged: .*config.json has \d+ bytes, manifest.json records",
         lambda d: _edit_json(d / "config.json", lambda c: c.update(mlp_hidden_size=96)), export=True),
    # Without a manifest (a checkpoint saved before manifests existed) the edit meets the shape check.
    Case("export_config_mismatch", r"shape mismatch: decoder.layers.1.mlp.linear_fc1.weight",
         lambda d: (_edit_json(d / "config.json", lambda c: c.update(mlp_hidden_size=96)),
                    (d / "release" / "manifest.json").unlink()), export=True),
)  # fmt: skip


def _errors_rank(rank: int, world: int, hf_src: Path, root: Path) -> dict[str, dict]:
    init_distributed()
    megatron_src = root / "megatron_src"
    import_hf(hf_src, megatron_src)
    full_disk = namedtuple("usage", "total used free")(10**12, 10**12 - 4096, 4096)
    results = {}
    for case in CASES:
        work = root / case.name
        src = work / "src"
        shutil.copytree(megatron_src if case.export else hf_src, src)
        if case.mutate:
            case.mutate(src)
        out = work / "out"
        if case.existing_out:
            out.mkdir()
            (out / "keep.txt").write_text("old")
        disk_usage = shutil.disk_usage
        if case.no_disk:
            shutil.disk_usage = lambda path: full_disk
        try:
            if case.export:
                export_hf(src, out)
            else:
                import_hf(src, out, tp=case.tp)
            message = None
        except CheckpointError as exc:
            message = str(exc)
        finally:
            shutil.disk_usage = disk_usage
        results[case.name] = {
            "message": message,
            "left": sorted(p.name for p in work.iterdir()),
            "out": sorted(p.name for p in out.iterdir()) if out.is_dir() else None,
        }
    replaced = root / "output_exists" / "out"
    import_hf(hf_src, replaced, overwrite=True)
    results["overwrite"] = {"left": sorted(p.name for p in replaced.parent.iterdir())}
    results["overwrite"]["out"] = sorted(p.name for p in replaced.iterdir())
    return results


@pytest.fixture(scope="module")
def error_results(hf_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    (results,) = run_distributed(_errors_rank, 1, hf_ckpts["tiny-gqa"], tmp_path_factory.mktemp("errors"))
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_error_message_and_no_partial_output(case: Case, error_results: dict[str, dict]) -> None:
    result = error_results[case.name]
    assert result["message"] is not None, f"{case.name}: no error raised"
    assert re.search(case.expect, result["message"]), result["message"]
    if case.existing_out:
        assert result["left"] == ["out", "src"] and result["out"] == ["keep.txt"]
    else:
        assert result["left"] == ["src"], result  # neither the output nor a staging folder


def test_overwrite_replaces_existing_output(error_results: dict[str, dict]) -> None:
    result = error_results["overwrite"]
    assert result["left"] == ["out", "src"]
    assert "keep.txt" not in result["out"] and "latest_checkpointed_iteration.txt" in result["out"]
