"""Training checkpoints: model, optimizer, LR scheduler, RNG and step in one Megatron ``torch_dist``
checkpoint (the layout of checkpointing/megatron_io.py, so a converted HF checkpoint loads the same way).

Crash safety: every rank writes into ``iter_XXXXXXX``; only after all ranks finished does rank 0
replace ``latest_checkpointed_iteration.txt`` (write to a temp file, ``os.replace``). A crash during a
save leaves the tracker on the previous checkpoint, which stays loadable. The data position is the
step: prompt batches and all sampling/masking randomness are pure functions of (seed, step), so a
resumed run continues exactly (tested: 4 steps == 2 + resume + 2).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_bgpo.checkpointing.megatron_io import (
    CHECKPOINT_VERSION,
    CONFIG_FILE,
    HF_FILES_SUBDIR,
    TOKENIZER_SUBDIR,
    TRACKER_FILE,
    SyncTorchDistSaveStrategy,
    iteration_dirname,
    load_model_checkpoint,
    model_sharded_state_dict,
    resolve_checkpoint,
)
from megatron_bgpo.training.config import CheckpointArgs, TrainConfig


def _unwrap(model) -> list[torch.nn.Module]:
    """The GPTModel chunks inside megatron DDP wrappers (whose load_state_dict returns nothing)."""
    return [getattr(m, "module", m) for m in model]


def _rng_object(is_loading: bool) -> ShardedObject:
    rank, world = dist.get_rank(), dist.get_world_size()
    state = (
        None
        if is_loading
        else {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        }
    )
    return ShardedObject("rng_state", state, (world,), (rank,), replica_id=0)


def _state(model, optimizer, scheduler, step: int, is_loading: bool, with_rng: bool) -> dict:
    state = model_sharded_state_dict(_unwrap(model))
    state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=is_loading)
    state["opt_param_scheduler"] = scheduler.state_dict()
    state["iteration"] = step
    state["checkpoint_version"] = CHECKPOINT_VERSION
    state["world_size"] = dist.get_world_size()
    if with_rng:
        state["rng_state"] = _rng_object(is_loading)
    return state


def save(cfg: TrainConfig, step: int, model, optimizer, scheduler, model_cfg, tokenizer) -> Path:
    """Save a full training checkpoint of iteration ``step`` under ``--save``; collective."""
    root = Path(cfg.checkpoint.save)
    folder = root / iteration_dirname(step)
    if dist.get_rank() == 0:
        if folder.exists():
            shutil.rmtree(folder)  # a leftover of a crashed save of this same iteration
        folder.mkdir(parents=True)
        model_cfg.to_json(root / CONFIG_FILE)
        tokenizer.save_pretrained(root / TOKENIZER_SUBDIR)
        source_files = Path(cfg.checkpoint.load or "") / HF_FILES_SUBDIR
        if cfg.checkpoint.load and source_files.is_dir() and not (root / HF_FILES_SUBDIR).exists():
            shutil.copytree(source_files, root / HF_FILES_SUBDIR)  # modeling code etc. for HF export
    dist.barrier()
    state = _state(model, optimizer, scheduler, step, is_loading=False, with_rng=True)
    dist_checkpointing.save(state, str(folder), sharded_strategy=SyncTorchDistSaveStrategy())
    dist.barrier()
    if dist.get_rank() == 0:
        tmp = root / (TRACKER_FILE + ".tmp")
        tmp.write_text(f"{step}\n")
        os.replace(tmp, root / TRACKER_FILE)
        _prune(root, keep=cfg.checkpoint.keep_last, current=step)
    dist.barrier()
    return folder


def _prune(root: Path, keep: int, current: int) -> None:
    """Delete all but the newest ``keep`` iteration folders (never the current one)."""
    if keep <= 0:
        return
    iters = sorted(int(p.name[5:]) for p in root.glob("iter_*") if p.name[5:].isdigit())
    for it in iters[:-keep]:
        if it != current:
            shutil.rmtree(root / iteration_dirname(it), ignore_errors=True)


def has_training_state(folder: Path) -> bool:
    common = dist_checkpointing.load_common_state_dict(str(folder))
    return "opt_param_scheduler" in common


def load(args: CheckpointArgs, model, optimizer, scheduler) -> int:
    """Load ``--load`` into model (and optimizer/scheduler/RNG unless ``--finetune`` or the checkpoint
    holds weights only, e.g. a converted HF model). Returns the step to start from."""
    if not args.load:
        return 0
    _, folder, _ = resolve_checkpoint(args.load)
    if args.finetune or not has_training_state(folder):
        load_model_checkpoint(_unwrap(model), folder)
        return 0
    common = dist_checkpointing.load_common_state_dict(str(folder))
    same_world = common.get("world_size") == dist.get_world_size()
    state = _state(model, optimizer, scheduler, 0, is_loading=True, with_rng=same_world)
    loaded = dist_checkpointing.load(state, str(folder))
    keys = [k for k in loaded if k.startswith("model")]
    for key, chunk in zip(sorted(keys), _unwrap(model), strict=True):
        chunk.load_state_dict(loaded[key])
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if same_world and loaded.get("rng_state") is not None:
        rng = loaded["rng_state"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return int(loaded["iteration"])
