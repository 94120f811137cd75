"""Per-rank setup shared by the distributed model tests: tiny LLaDA at a given TP/PP with known weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from megatron_bgpo.checkpointing.mappings.base import dict_reader, hf_prefix, load_hf_into_model
from megatron_bgpo.models.llada import LLaDAConfig, build_model_chunks, get_preset
from megatron_bgpo.models.llada.reference import random_hf_weights
from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed


@dataclass
class RankSetup:
    cfg: LLaDAConfig
    chunks: list
    weights: dict[str, torch.Tensor]
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    tp_group: object
    is_last_stage: bool


def setup_rank(
    tp: int,
    pp: int,
    preset: str = "tiny-gqa",
    seed: int = 3,
    vpp: int | None = None,
    cfg_changes: dict | None = None,
    **overrides,
) -> RankSetup:
    """``cfg_changes`` edit the preset (e.g. n_layers); ``overrides`` go to build_model_chunks
    (use_te or TransformerConfig fields)."""
    parallel = ParallelConfig(tp, pp, vpp)
    groups = parallel_groups(parallel, init_distributed())
    pgs = groups.pgs
    set_seed(1234)
    cfg = get_preset(preset).replace(**(cfg_changes or {}))
    chunks = build_model_chunks(cfg, parallel, pgs, **overrides)
    weights = random_hf_weights(cfg, seed=seed)
    for chunk in chunks:
        load_hf_into_model(chunk, cfg, dict_reader(weights, hf_prefix(cfg)), groups.tp_rank, tp)
    return RankSetup(
        cfg=cfg,
        chunks=chunks,
        weights=weights,
        tp_rank=groups.tp_rank,
        tp_size=tp,
        pp_rank=groups.pp_rank,
        pp_size=pp,
        tp_group=groups.tp,
        is_last_stage=groups.is_last_stage,
    )


def toy_batch(cfg: LLaDAConfig, batch: int, seq: int, seed: int, pad_rows: int = 1):
    """Random tokens [B, T], a left-padding mask [B, T] and target tokens [B, T]."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
    targets = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.bool)
    for r in range(min(pad_rows, batch)):
        mask[r, : 1 + r] = False
    return tokens, mask, targets
