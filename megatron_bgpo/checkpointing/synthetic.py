"""Synthetic HF LLaDA checkpoints in the real on-disk layout, for tests and the memory benchmark.

`write_random_hf_checkpoint` writes ``config.json`` (with LLaDA's ``auto_map``), by-type sharded
safetensors + index, and optionally placeholder side files (tokenizer config, modeling code).
Tensors are generated one at a time from a per-tensor seed, so an 8B-shaped checkpoint never needs
more than one tensor in memory; `random_tensor` regenerates any of them for comparisons.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch

from megatron_bgpo.checkpointing.hf_io import LLADA_AUTO_MAP, write_hf_weights
from megatron_bgpo.checkpointing.mappings.base import hf_shapes
from megatron_bgpo.models.llada.config import LLaDAConfig

# Non-weight files of a released LLaDA folder, with placeholder content.
SIDE_FILES = {
    "tokenizer_config.json": '{"add_bos_token": false, "add_eos_token": false}\n',
    "special_tokens_map.json": '{"eos_token": "<|endoftext|>"}\n',
    "generation_config.json": '{"bos_token_id": 126080, "eos_token_id": 126081}\n',
    "modeling_llada.py": "# LLaDA modeling code (placeholder)\n",
    "configuration_llada.py": "# LLaDA configuration code (placeholder)\n",
}


def random_tensor(name: str, shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Deterministic random tensor for HF tensor ``name``: norms around 1, other weights N(0, 0.05^2)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    t = torch.randn(shape, generator=gen)
    if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
        return t.mul_(0.1).add_(1.0).to(dtype)
    return t.mul_(0.05).to(dtype)


def random_weights(
    cfg: LLaDAConfig, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """All tensors `write_random_hf_checkpoint` writes, in memory (tiny configs only)."""
    return {n: random_tensor(n, s, seed, dtype) for n, s in hf_shapes(cfg).items()}


def write_random_hf_checkpoint(
    out_dir: str | os.PathLike,
    cfg: LLaDAConfig,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    shard_size: int | str = "5GB",
    side_files: bool = True,
) -> Path:
    """Write a random checkpoint of ``cfg`` in its architecture's HF layout into ``out_dir``; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    auto_map = {"auto_map": LLADA_AUTO_MAP} if cfg.family == "llada" else {}
    config = cfg.replace(extra={**auto_map, "torch_dtype": str(dtype).removeprefix("torch."), **cfg.extra})
    config.to_json(out / "config.json")
    shapes = hf_shapes(cfg)
    write_hf_weights(out, cfg, lambda name: random_tensor(name, shapes[name], seed, dtype), dtype, shard_size)
    if side_files:
        for name, text in SIDE_FILES.items():
            (out / name).write_text(text)
    return out
