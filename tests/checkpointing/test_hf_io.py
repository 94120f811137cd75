"""HF folder reader/writer: by-type sharding, index, streaming writes, sliced reads, sizes (one process)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megatron_bgpo.checkpointing.hf_io import (
    INDEX_FILE,
    TYPE_ORDER,
    CheckpointError,
    HFCheckpoint,
    check_disk_space,
    parse_size,
    plan_shards,
    read_hf_config,
    type_ordered_names,
)
from megatron_bgpo.checkpointing.llada_mapping import HF_PREFIX
from megatron_bgpo.checkpointing.synthetic import random_weights
from megatron_bgpo.models.llada import get_preset
from megatron_bgpo.models.llada.reference import hf_tensor_shapes
from tests.checkpointing.conftest import PRESETS, SHARD_SIZE


def _type_rank(name: str) -> int:
    """Position of a tensor's type in the real checkpoint's by-type order."""
    short = name.removeprefix(HF_PREFIX)
    generic = ".".join("{i}" if part.isdigit() else part for part in short.split("."))
    return TYPE_ORDER.index(generic)


@pytest.mark.parametrize("preset", PRESETS)
def test_writer_real_layout(hf_ckpts: dict[str, Path], preset: str) -> None:
    cfg = get_preset(preset)
    folder = hf_ckpts[preset]
    index = json.loads((folder / INDEX_FILE).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3, files
    assert files == [f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)]
    # Grouped by tensor type, not by layer: walking the shards in order never goes back to an earlier type,
    # and a layer's tensors are spread over several shards.
    loaded: dict[str, torch.Tensor] = {}
    previous = -1
    for file in files:
        shard = load_file(folder / file)
        names = [n for n in index["weight_map"] if index["weight_map"][n] == file]
        assert sorted(shard) == sorted(names)
        ranks = [_type_rank(n) for n in names]
        assert ranks == sorted(ranks) and ranks[0] >= previous
        previous = ranks[-1]
        loaded.update(shard)
        nbytes = sum(t.numel() * t.element_size() for t in shard.values())
        assert nbytes <= parse_size(SHARD_SIZE) or len(shard) == 1
    layer0 = {f for n, f in index["weight_map"].items() if ".blocks.0." in n}
    assert len(layer0) > 1
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in loaded.values())
    expected = random_weights(cfg, seed=PRESETS.index(preset) + 1)
    assert sorted(loaded) == sorted(expected) == sorted(hf_tensor_shapes(cfg))
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_llada.LLaDAModelLM"
    assert read_hf_config(folder) == cfg


def test_reader_slices(hf_ckpts: dict[str, Path]) -> None:
    cfg = get_preset("tiny-gqa")
    weights = random_weights(cfg, seed=2)
    hf = HFCheckpoint(hf_ckpts["tiny-gqa"])
    hf.check(cfg)
    assert hf.dtype == torch.float32
    for name in (
        HF_PREFIX + "wte.weight",
        HF_PREFIX + "blocks.2.k_proj.weight",
        HF_PREFIX + "blocks.1.ff_out.weight",
    ):
        full = weights[name]
        assert torch.equal(hf.read(name), full)
        assert torch.equal(hf.read(name, 0, 8, 24), full[8:24])
        assert torch.equal(hf.read(name, 1, 16, 48), full[:, 16:48])
    assert torch.equal(hf.reader()("ln_f.weight", None, 0, 0), weights[HF_PREFIX + "ln_f.weight"])
    with pytest.raises(CheckpointError, match="tensor missing"):
        hf.read(HF_PREFIX + "blocks.9.q_proj.weight")


def test_type_order_and_shard_plan() -> None:
    cfg = get_preset("llada-8b")
    names = type_ordered_names(cfg)
    assert names[0] == HF_PREFIX + "blocks.0.attn_out.weight" and names[-1] == HF_PREFIX + "ff_out.weight"
    shapes = hf_tensor_shapes(cfg)
    sizes = [(n, math.prod(shapes[n]) * 2) for n in names]
    assert sum(s for _, s in sizes) == 16_031_162_368  # the released bf16 index's total_size (spec §1.2)
    shards = plan_shards(sizes, parse_size("3GB"))
    assert len(shards) == 6  # like the released checkpoint
    assert HF_PREFIX + "wte.weight" in shards[0] and HF_PREFIX + "blocks.31.attn_out.weight" in shards[0]
    assert plan_shards([("a", 10), ("b", 10), ("c", 25), ("d", 1)], 20) == [["a", "b"], ["c"], ["d"]]


def test_parse_size_and_disk_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("200KB") == 200_000
    assert parse_size(123) == 123
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("five gigs")
    check_disk_space(tmp_path / "new" / "deeper", 1)  # probes the nearest existing parent
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CheckpointError, match="not enough disk space"):
        check_disk_space(tmp_path / "out", 10**6)
