"""Training checkpoints: model, optimizer, LR scheduler, RNG, step and the non-finite skip counters in
one Megatron ``torch_dist`` checkpoint (the layout of checkpointing/megatron_io.py, so a converted HF
checkpoint loads the same way).

Crash safety: every rank writes into ``iter_XXXXXXX``; after all ranks finished, the ranks checksum their
own shards and rank 0 writes ``manifest.json`` (size + crc32 of every file, config.json and tokenizer/*
included), then replaces ``latest_checkpointed_iteration.txt`` (temp file, fsync, ``os.replace``). A kill
at any moment leaves the tracker on a complete, verified checkpoint. A load verifies the manifest and
names the first bad file; ``--load-fallback true`` takes the newest complete iteration instead, loudly.
A save that fails (disk full, not writable) removes its partial folder and raises `CheckpointError`;
nothing saved before is modified (config.json and tokenizer files are replaced atomically, and only when
their bytes change). The data position is the step: prompt batches and all sampling/masking randomness
are pure functions of (seed, step), so a resumed run continues exactly (tested under SIGKILL).
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject
from torch.distributed.checkpoint.api import CheckpointException

from megatron_bgpo.checkpointing.hf_io import CheckpointError, check_disk_space, expected_bytes
from megatron_bgpo.checkpointing.megatron_io import (
    CHECKPOINT_VERSION,
    CONFIG_FILE,
    HF_FILES_SUBDIR,
    TOKENIZER_SUBDIR,
    TRACKER_FILE,
    SyncTorchDistSaveStrategy,
    from_rank0,
    iteration_dirname,
    load_into_chunks,
    load_model_checkpoint,
    model_sharded_state_dict,
    resolve_checkpoint,
    sharded_state_for,
    shared_files,
    verify_checkpoint,
    write_atomic,
    write_manifest,
)
from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.parallel import cpu_compat
from megatron_bgpo.training.config import CheckpointArgs, TrainConfig


@dataclass
class Progress:
    """Where a run stands: the next step and the non-finite skip counters (total, current streak)."""

    step: int = 0
    skipped_steps: int = 0
    skip_streak: int = 0


def _unwrap(model) -> list[torch.nn.Module]:
    """The model chunks inside megatron DDP wrappers (whose load_state_dict returns nothing)."""
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
            "cuda": cpu_compat.cuda_rng_state(),
        }
    )
    return ShardedObject("rng_state", state, (world,), (rank,), replica_id=0)


# How megatron-core's DistributedOptimizer lays out its state in a checkpoint. 'fully_reshardable' stores
# each parameter's fp32 main weight and Adam moments in the parameter's own (TP-sharded) shape, like the
# non-distributed optimizer, so a checkpoint resumes at any DP/TP/PP layout and with either optimizer.
# 'dp_reshardable' stores the flat DP shards of the grad buckets: it reshards across DP only (the bucket
# layout depends on TP/PP). The 0.19 default, 'fully_sharded_model_space', cannot save at all
# ("ShardedTensor.flattened_range is not supported"). The non-distributed optimizers ignore this.
OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}


def _is_distributed(optimizer) -> bool:
    """Whether ``optimizer`` is (or chains) megatron-core's DistributedOptimizer."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    return any(isinstance(o, DistributedOptimizer) for o in inner)


def _check_same_optimizer(folder: Path, common: dict, optimizer) -> None:
    """The two megatron-core optimizers store their state under different keys and param groups, so a
    checkpoint resumes only with the optimizer it was saved with (older checkpoints do not say)."""
    saved, current = common.get("distributed_optimizer"), _is_distributed(optimizer)
    if saved is not None and saved != current:
        raise CheckpointError(
            f"--load {folder}: saved with --use-distributed-optimizer {str(saved).lower()}, this run uses "
            f"{str(current).lower()}; the optimizer state does not convert between the two. Resume with "
            "the same setting, or pass --finetune true to load the weights only"
        )


def _state(model, optimizer, scheduler, step: int, is_loading: bool, with_rng: bool) -> dict:
    state = model_sharded_state_dict(_unwrap(model))
    state["optimizer"] = optimizer.sharded_state_dict(
        state, is_loading=is_loading, metadata=dict(OPTIMIZER_METADATA)
    )
    state["opt_param_scheduler"] = scheduler.state_dict()
    state["iteration"] = step
    state["checkpoint_version"] = CHECKPOINT_VERSION
    state["world_size"] = dist.get_world_size()
    state["distributed_optimizer"] = _is_distributed(optimizer)
    if with_rng:
        state["rng_state"] = _rng_object(is_loading)
    return state


def _collective(what: str, fn) -> None:
    """Run ``fn()`` on rank 0; an OSError there becomes the same `CheckpointError` on every rank."""

    def attempt() -> str | None:
        try:
            fn()
        except OSError as exc:
            return f"{what}: {exc}"
        return None

    problem = from_rank0(attempt)
    if problem is not None:
        raise CheckpointError(problem)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``, looking into torch's CheckpointException failures."""
    if isinstance(exc, CheckpointException) and exc.failures:
        exc = next(iter(exc.failures.values()))[0]
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _replace_if_changed(tmp: Path, final: Path) -> None:
    """Move ``tmp`` over ``final`` atomically unless ``final`` already holds the same bytes."""
    if final.is_file() and final.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        os.replace(tmp, final)


def _write_shared_files(cfg: TrainConfig, root: Path, model_cfg: LLaDAConfig, tokenizer) -> None:
    """config.json, tokenizer/ and hf_files/ beside the iterations, each file replaced atomically."""
    model_cfg.to_json(root / (CONFIG_FILE + ".tmp"))
    _replace_if_changed(root / (CONFIG_FILE + ".tmp"), root / CONFIG_FILE)
    staging = root / (TOKENIZER_SUBDIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save_pretrained(staging)
    (root / TOKENIZER_SUBDIR).mkdir(exist_ok=True)
    for path in sorted(staging.iterdir()):
        _replace_if_changed(path, root / TOKENIZER_SUBDIR / path.name)
    staging.rmdir()
    source_files = Path(cfg.checkpoint.load or "") / HF_FILES_SUBDIR
    if cfg.checkpoint.load and source_files.is_dir() and not (root / HF_FILES_SUBDIR).exists():
        shutil.copytree(source_files, root / HF_FILES_SUBDIR)  # modeling code etc. for HF export


def save(
    cfg: TrainConfig,
    step: int,
    model,
    optimizer,
    scheduler,
    model_cfg,
    tokenizer,
    progress: Progress | None = None,
) -> Path:
    """Save a full training checkpoint of iteration ``step`` under ``--save``; collective."""
    root = Path(cfg.checkpoint.save)
    folder = root / iteration_dirname(step)

    def prepare() -> None:
        if folder.exists():  # a leftover of a crashed save of this iteration (the tracker is elsewhere)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        _write_shared_files(cfg, root, model_cfg, tokenizer)

    _collective(f"--save {root}: cannot prepare {folder.name}", prepare)
    state = _state(model, optimizer, scheduler, step, is_loading=False, with_rng=True)
    progress = progress or Progress(step)
    state["skipped_steps"], state["skip_streak"] = progress.skipped_steps, progress.skip_streak
    try:
        dist_checkpointing.save(state, str(folder), sharded_strategy=SyncTorchDistSaveStrategy())
        dist.barrier()
        write_manifest(root, folder, from_rank0(lambda: shared_files(root)))
    except (OSError, RuntimeError, CheckpointException) as exc:  # torch's CheckpointException: any rank
        cause = _root_cause(exc)  # failed; the details are on rank 0 (the coordinator)
        reason = from_rank0(
            lambda: f"{type(cause).__name__}: {cause}; {shutil.disk_usage(root).free / 2**20:.0f} MiB free"
        )
        if dist.get_rank() == 0:
            shutil.rmtree(folder, ignore_errors=True)
        raise CheckpointError(
            f"--save {root}: writing {folder.name} failed ({reason}); the partial folder was removed and "
            f"{TRACKER_FILE} still names the previous checkpoint. Free disk space or point --save "
            "elsewhere, then resume with --load"
        ) from exc
    _collective(
        f"--save {root}: cannot update {TRACKER_FILE}", lambda: write_atomic(root / TRACKER_FILE, f"{step}\n")
    )
    if dist.get_rank() == 0:
        _prune(root, keep=cfg.checkpoint.keep_last, current=step)
    dist.barrier()
    return folder


def checkpoint_bytes(model_cfg: LLaDAConfig, params_dtype: torch.dtype) -> int:
    """Expected size of one training checkpoint: weights in ``params_dtype``, Adam's two fp32 moments, and
    fp32 main weights when training in bf16 (the optimizer state megatron-core saves)."""
    fp32_state = 8 + (4 if params_dtype != torch.float32 else 0)
    return expected_bytes(model_cfg, params_dtype) + model_cfg.num_parameters * fp32_state


def check_save_dir(save: str, need_bytes: int) -> None:
    """Fail at start-up, on every rank alike, when ``--save`` is not a writable folder (checked by
    writing a probe file) or has less free space than one checkpoint (``need_bytes``); collective."""
    root = Path(save)
    problem = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write_probe.{dist.get_rank()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        problem = f"--save {save} is not a writable folder ({exc}); pass a folder this job can write"
    else:
        try:
            check_disk_space(root, need_bytes)
        except CheckpointError as exc:
            problem = f"--save {save}: {exc} (one checkpoint); free space or point --save at a larger disk"
    problems: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    first = next((p for p in problems if p is not None), None)
    if first is not None:
        raise CheckpointError(first)


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


def _iterations(root: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in root.glob("iter_*") if p.name[5:].isdigit())


def resolve_load(args: CheckpointArgs) -> Path | None:
    """The verified iteration folder that ``--load`` names (None without ``--load``); collective.

    The tracker's iteration must match its manifest; otherwise `CheckpointError` names the iteration and
    the first bad file, unless ``--load-fallback`` is set: then the newest iteration that verifies is
    taken and rank 0 says so on stderr.
    """
    if not args.load:
        return None
    try:
        _, folder, _ = resolve_checkpoint(args.load)
        verify_checkpoint(folder)
        return folder
    except CheckpointError as exc:
        if not getattr(args, "load_fallback", False):
            raise CheckpointError(
                f"{exc}; pass --load-fallback true to resume from the newest complete iteration"
            ) from exc
        damaged = str(exc)
    root = Path(args.load)
    for it in reversed(from_rank0(lambda: _iterations(root))):
        folder = root / iteration_dirname(it)
        try:
            verify_checkpoint(folder)
        except CheckpointError:
            continue
        if dist.get_rank() == 0:
            import sys

            print(f"warning: --load-fallback: {damaged}; resuming from {folder} instead", file=sys.stderr)
        return folder
    raise CheckpointError(f"{damaged}; --load-fallback found no complete iteration under {root}")


def load(args: CheckpointArgs, model, optimizer, scheduler, folder: Path | None = None) -> Progress:
    """Load ``folder`` (default: what ``--load`` names) into model (and optimizer/scheduler/RNG unless
    ``--finetune`` or the checkpoint holds weights only, e.g. a converted HF model). Returns the step to
    start from and the skip counters."""
    if not args.load:
        return Progress()
    if folder is None:
        _, folder, _ = resolve_checkpoint(args.load)
    if args.finetune or not has_training_state(folder):
        load_model_checkpoint(_unwrap(model), folder)
        if optimizer is not None:  # bf16 / distributed: the fp32 main weights were copied at build time
            optimizer.reload_model_params()
        return Progress()
    common = dist_checkpointing.load_common_state_dict(str(folder))
    _check_same_optimizer(folder, common, optimizer)
    same_world = common.get("world_size") == dist.get_world_size()
    state = _state(model, optimizer, scheduler, 0, is_loading=True, with_rng=same_world)
    loaded = dist_checkpointing.load(sharded_state_for(state, folder, _unwrap(model)), str(folder))
    load_into_chunks(_unwrap(model), loaded, folder)
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if same_world and loaded.get("rng_state") is not None:
        rng = loaded["rng_state"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        cpu_compat.set_cuda_rng_state(rng["cuda"])
    return Progress(int(loaded["iteration"]), common.get("skipped_steps", 0), common.get("skip_streak", 0))
