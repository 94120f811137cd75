"""Tiny random LLaDA checkpoints in the real HF layout (by-type shards + index), MHA and GQA."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_bgpo.checkpointing.synthetic import write_random_hf_checkpoint
from megatron_bgpo.models.llada import get_preset

# ~720 KB of fp32 weights per tiny model: 200 KB shards give 4 files with types spread over them.
SHARD_SIZE = "200KB"
PRESETS = ("tiny", "tiny-gqa")


@pytest.fixture(scope="session")
def hf_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """preset name -> HF folder (fp32 weights, config.json with auto_map, side files)."""
    root = tmp_path_factory.mktemp("hf_ckpts")
    return {
        name: write_random_hf_checkpoint(root / name, get_preset(name), seed=i + 1, shard_size=SHARD_SIZE)
        for i, name in enumerate(PRESETS)
    }
