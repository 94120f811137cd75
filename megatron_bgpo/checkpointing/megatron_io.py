"""The model part of Megatron ``torch_dist`` checkpoints: save, load at any TP/PP, and per-tensor reads.

On-disk layout (Megatron-LM conventions)::

    <ckpt>/latest_checkpointed_iteration.txt   "release" or the iteration number
    <ckpt>/release/ or <ckpt>/iter_0000100/     megatron.core.dist_checkpointing (torch_dist) folder:
                                                 .metadata, __<rank>_<n>.distcp, metadata.json, and
                                                 manifest.json (size + crc32 of every file, written last)
    <ckpt>/config.json                          the HF config in its family's format (registry; auto_map kept)
    <ckpt>/tokenizer/                           tokenizer files (`load_tokenizer(<ckpt>)` finds them)
    <ckpt>/hf_files/                            other files of the source HF folder (generation config,
                                                 modeling code), copied back on export

The state dict is Megatron-LM's: ``{"model": chunk.sharded_state_dict()}`` (``model0``, ``model1``, ...
with virtual pipeline stages) plus ``checkpoint_version`` and ``iteration``. Tensors are stored under
their global (TP=1) keys, so `load_model_checkpoint` reshards to any TP/PP layout. The HybridModel build
writes one key per sublayer; checkpoints in the GPTModel layout (layers stacked, written by earlier
builds) load too (checkpointing/layout.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing import ShardedTensor
from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.dist_checkpointing.strategies.torch import (
    TorchDistLoadShardedStrategy,
    TorchDistSaveShardedStrategy,
)
from megatron.core.dist_checkpointing.validation import StrictHandling

from megatron_bgpo.checkpointing.hf_io import CheckpointError, config_from_file
from megatron_bgpo.checkpointing.layout import GPT, detect_layout, to_gpt_layout
from megatron_bgpo.checkpointing.mappings.base import TensorMapping, logical_shape, model_mappings
from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.tokenizer.loader import CHECKPOINT_SUBDIR

TRACKER_FILE = "latest_checkpointed_iteration.txt"
RELEASE = "release"
CONFIG_FILE = "config.json"
TOKENIZER_SUBDIR = CHECKPOINT_SUBDIR
HF_FILES_SUBDIR = "hf_files"
MANIFEST_FILE = "manifest.json"
CHECKPOINT_VERSION = 3.0
_READ_CHUNK = 16 * 2**20


def iteration_dirname(iteration: int | None) -> str:
    """``release`` for None, else Megatron-LM's ``iter_XXXXXXX``."""
    return RELEASE if iteration is None else f"iter_{iteration:07d}"


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, Path, int | None]:
    """(root, iteration folder, iteration or None for release) of a checkpoint root or iteration folder."""
    path = Path(path)
    if (path / "metadata.json").is_file():
        name = path.name
        iteration = int(name.removeprefix("iter_")) if name.startswith("iter_") else None
        return path.parent, path, iteration
    tracker = path / TRACKER_FILE
    if not tracker.is_file():
        raise CheckpointError(
            f"{path}: not a Megatron checkpoint (no {TRACKER_FILE} and no dist-checkpoint metadata.json)"
        )
    text = tracker.read_text().strip()
    try:
        iteration = None if text == RELEASE else int(text)
    except ValueError as exc:
        raise CheckpointError(f"{tracker}: expected 'release' or an iteration number, got {text!r}") from exc
    folder = path / iteration_dirname(iteration)
    if not dist_checkpointing.check_is_distributed_checkpoint(str(folder)):
        raise CheckpointError(f"{tracker} points to {folder.name}, which is not a complete dist checkpoint")
    return path, folder, iteration


def file_digest(path: Path) -> dict[str, int]:
    """``{"size": bytes, "crc32": zlib.crc32 of the content}`` of one file, read in 16 MiB chunks."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return {"size": size, "crc32": crc}


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def from_rank0(fn):
    """``fn()`` computed on rank 0 and broadcast (picklable) to every rank; plain call without a group."""
    if _world() == 1:
        return fn()
    box = [fn() if _rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _owner(name: str, index: int, world: int) -> int:
    """The rank that hashes ``name``: the writer of a ``__<rank>_<n>.distcp`` shard, else round robin."""
    base = Path(name).name
    if base.startswith("__") and base.endswith(".distcp") and base[2:].split("_")[0].isdigit():
        return int(base[2:].split("_")[0]) % world
    return index % world


def digests(root: Path, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """`file_digest` of ``root / name`` for each name that is a file, split over the ranks (each shard by
    the rank that wrote it) and gathered on every rank; collective when torch.distributed is initialised."""
    world = _world()
    mine = {
        n: file_digest(root / n)
        for i, n in enumerate(names)
        if _owner(n, i, world) == _rank() and (root / n).is_file()
    }
    if world == 1:
        return mine
    parts: list[dict | None] = [None] * world
    dist.all_gather_object(parts, mine)
    return {k: v for part in parts for k, v in part.items()}


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file, fsync and ``os.replace`` (never a half file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(root: Path, folder: Path, shared: Sequence[str] = ()) -> None:
    """Record size and crc32 of every file of the finished iteration ``folder`` (and of ``shared`` files
    beside it, e.g. config.json, tokenizer/*) in ``folder/manifest.json``; collective, rank 0 writes.
    Call after every rank finished writing and before the tracker file is replaced."""

    def listing() -> list[str]:
        files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
        return [f"{folder.name}/{n}" for n in files] + [s for s in shared if (root / s).is_file()]

    names = from_rank0(listing)
    found = digests(root, names)
    if _rank() == 0:
        manifest = {"version": 1, "checksum": "crc32", "files": {n: found[n] for n in names}}
        write_atomic(folder / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")


def manifest_problem(folder: Path) -> str | None:
    """None when the files match ``folder/manifest.json``, else what is wrong (the first bad file);
    collective. A folder without a manifest is a problem too (a save that never finished)."""
    root, path = folder.parent, folder / MANIFEST_FILE

    def read() -> dict | str:
        if not path.is_file():
            return f"{path} is missing (the save did not finish)"
        try:
            files = json.loads(path.read_text())["files"]
            return {str(k): {"size": int(v["size"]), "crc32": int(v["crc32"])} for k, v in files.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"{path} is unreadable ({exc})"

    recorded = from_rank0(read)
    if isinstance(recorded, str):
        return recorded
    found = digests(root, sorted(recorded))
    for name, want in sorted(recorded.items()):
        have = found.get(name)
        if have is None:
            return f"{root / name} is missing"
        if have["size"] != want["size"]:
            return f"{root / name} has {have['size']} bytes, {MANIFEST_FILE} records {want['size']}"
        if have["crc32"] != want["crc32"]:
            return f"{root / name} has crc32 {have['crc32']:08x}, {MANIFEST_FILE} records {want['crc32']:08x}"
    return None


def shared_files(root: Path) -> list[str]:
    """The files beside the iteration folders that a load reads: config.json and tokenizer/*."""
    tok = root / TOKENIZER_SUBDIR
    names = (
        sorted(f"{TOKENIZER_SUBDIR}/{p.name}" for p in tok.iterdir() if p.is_file()) if tok.is_dir() else []
    )
    return [CONFIG_FILE, *names]


def verify_checkpoint(folder: Path) -> None:
    """Raise `CheckpointError` naming the iteration folder and its first bad file; collective.

    A folder without ``manifest.json`` (saved before manifests existed) only has to hold the
    dist-checkpoint metadata files; rank 0 warns that its contents are not verified.
    """
    if not from_rank0(lambda: (folder / MANIFEST_FILE).is_file()):
        missing = from_rank0(
            lambda: [n for n in (".metadata", "metadata.json") if not (folder / n).is_file()]
        )
        if missing:
            raise CheckpointError(f"checkpoint {folder} is damaged: {missing[0]} is missing")
        if _rank() == 0:
            print(f"warning: {folder} has no {MANIFEST_FILE} (an older save); files not verified", flush=True)
        return
    problem = manifest_problem(folder)
    if problem is not None:
        raise CheckpointError(f"checkpoint {folder} is damaged: {problem}")


def read_checkpoint_config(path: str | os.PathLike) -> LLaDAConfig:
    """The LLaDA config stored beside a Megatron checkpoint (root or iteration folder)."""
    root, _, _ = resolve_checkpoint(path)
    return config_from_file(
        root / CONFIG_FILE, f"{root}: no {CONFIG_FILE} beside the checkpoint (needed for the architecture)"
    )


@contextlib.contextmanager
def _in_process_write_results() -> Iterator[None]:
    """megatron-core 0.19's writer collects write results through a ``multiprocessing.Manager`` queue,
    which starts a server process (impossible in daemonic ranks, slow everywhere). A synchronous save
    only needs a thread-safe queue; install one for the duration of the save, then restore."""
    previous = filesystem_async._results_queue
    filesystem_async._results_queue = queue.Queue()
    try:
        yield
    finally:
        filesystem_async._results_queue = previous


class SyncTorchDistSaveStrategy(TorchDistSaveShardedStrategy):
    """``torch_dist`` save that writes in this process (writer threads only, no helper process)."""

    def save(self, sharded_state_dict, checkpoint_dir) -> None:
        with _in_process_write_results():
            super().save(sharded_state_dict, checkpoint_dir)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _chunk_keys(model_chunks: Sequence[torch.nn.Module]) -> list[str]:
    return ["model"] if len(model_chunks) == 1 else [f"model{i}" for i in range(len(model_chunks))]


def model_sharded_state_dict(model_chunks: Sequence[torch.nn.Module]) -> dict:
    """Megatron-LM's model entries: ``model`` (or ``model0``.. per virtual stage) -> sharded state dict."""
    return {k: c.sharded_state_dict() for k, c in zip(_chunk_keys(model_chunks), model_chunks, strict=True)}


def copy_tree_files(
    src: str | os.PathLike, dst: str | os.PathLike, names: Sequence[str] | None = None
) -> None:
    """Copy the files (not folders) of ``src`` (or only ``names``) into ``dst``."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            shutil.copy2(path, dst / path.name)


def save_model_checkpoint(
    model_chunks: Sequence[torch.nn.Module],
    ckpt_dir: str | os.PathLike,
    *,
    iteration: int | None = None,
    config: LLaDAConfig | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
) -> Path:
    """Save the model chunks of every rank as ``<ckpt_dir>/release`` (or ``iter_XXXXXXX``); collective.

    Rank 0 writes ``config.json`` (when ``config`` is given), copies the files of ``tokenizer_dir`` into
    ``<ckpt_dir>/tokenizer/`` and, last, updates the tracker file. Returns the iteration folder.
    """
    root = Path(ckpt_dir)
    folder = root / iteration_dirname(iteration)
    if _rank() == 0:
        folder.mkdir(parents=True, exist_ok=True)
    if dist.is_initialized():
        dist.barrier()
    state = model_sharded_state_dict(model_chunks)
    state["checkpoint_version"] = CHECKPOINT_VERSION
    state["iteration"] = iteration or 0
    dist_checkpointing.save(state, str(folder), sharded_strategy=SyncTorchDistSaveStrategy())
    if _rank() == 0:
        if config is not None:
            config.to_json(root / CONFIG_FILE)
        if tokenizer_dir is not None:
            copy_tree_files(tokenizer_dir, root / TOKENIZER_SUBDIR)
    if dist.is_initialized():
        dist.barrier()
    write_manifest(root, folder, from_rank0(lambda: shared_files(root)))
    if _rank() == 0:
        write_atomic(
            root / TRACKER_FILE, iteration_dirname(iteration) if iteration is None else f"{iteration}\n"
        )
    if dist.is_initialized():
        dist.barrier()
    return folder


def checkpoint_layout(folder: Path) -> str:
    """``hybrid`` or ``gpt``: the model layout of a checkpoint folder's tensors (checkpointing/layout.py)."""
    return detect_layout(dist_checkpointing.load_tensors_metadata(str(folder)))


def sharded_state_for(state: dict, folder: Path, model_chunks: Sequence[torch.nn.Module]) -> dict:
    """``state`` (model and optimizer sharded tensors of the HybridModel ``model_chunks``) keyed as
    ``folder`` stores them: rewritten to the GPT layout for a checkpoint of the earlier GPTModel build."""
    if checkpoint_layout(folder) != GPT:
        return state
    return to_gpt_layout(state, model_chunks[0].config.num_layers // 2)  # two sublayers per LLaDA block


def _is_extra_state(key: str) -> bool:
    return key.split("/")[0].endswith("_extra_state")


def _check_shapes(state: dict, folder: Path) -> None:
    """Clear error when the model's global tensor shapes differ from the checkpoint's."""
    stored = dist_checkpointing.load_tensors_metadata(str(folder))
    for value in nested_values(state):
        if isinstance(value, ShardedTensor) and value.key in stored:
            want, have = tuple(value.global_shape), tuple(stored[value.key].global_shape)
            if want != have:
                raise CheckpointError(
                    f"{folder}: tensor {value.key} has global shape {list(have)}, the model expects "
                    f"{list(want)} (checkpoint of a different architecture?)"
                )


def load_model_checkpoint(
    model_chunks: Sequence[torch.nn.Module], ckpt_dir: str | os.PathLike, *, strict: bool = True
) -> int:
    """Load a checkpoint written at any TP/PP into this rank's model chunks; collective. Returns the
    iteration (0 for ``release``).

    ``ckpt_dir`` is a checkpoint root (the tracker file picks the iteration) or an iteration folder.
    Only ``_extra_state`` entries (Transformer-Engine FP8 metadata) may be absent from the checkpoint;
    a missing weight raises `CheckpointError` (unless ``strict=False``, which leaves it untouched).
    """
    _, folder, iteration = resolve_checkpoint(ckpt_dir)
    verify_checkpoint(folder)
    state = sharded_state_for(model_sharded_state_dict(model_chunks), folder, model_chunks)
    _check_shapes(state, folder)
    # "unexpected" in megatron-core's terms: requested by the model but absent from the checkpoint.
    loaded, _, unexpected = dist_checkpointing.load(
        state, str(folder), strict=StrictHandling.RETURN_UNEXPECTED
    )
    missing_weights = sorted(k for k in unexpected if not _is_extra_state(k))
    if missing_weights and strict:
        raise CheckpointError(f"{folder}: weights missing from the checkpoint: {missing_weights[:6]}")
    load_into_chunks(model_chunks, loaded, folder, strict)
    return iteration or 0


def load_into_chunks(
    model_chunks: Sequence[torch.nn.Module], loaded: dict, folder: Path, strict: bool = True
) -> None:
    """Copy a loaded checkpoint's model entries into the chunks; only ``_extra_state`` entries (TE FP8
    metadata; absent from GPT-layout checkpoints for the output layer) may be missing."""
    for key, chunk in zip(_chunk_keys(model_chunks), model_chunks, strict=True):
        result = chunk.load_state_dict(loaded[key], strict=False)
        bad = [k for k in result.missing_keys if not k.endswith("_extra_state")]
        if (bad and strict) or result.unexpected_keys:
            raise CheckpointError(
                f"{folder}: state dict mismatch for {key}: missing {bad[:6]}, "
                f"unexpected {list(result.unexpected_keys)[:6]}"
            )


class MegatronCheckpointReader:
    """Reads logical (TP=1) tensors of a Megatron LLaDA checkpoint one layer at a time, in one process.

    Needs an initialised (single-rank) process group; reads only the chunks that overlap the request.
    The folder's manifest is verified first (`verify_checkpoint`).
    """

    def __init__(self, ckpt_dir: str | os.PathLike, cfg: LLaDAConfig | None = None) -> None:
        self.root, self.folder, self.iteration = resolve_checkpoint(ckpt_dir)
        verify_checkpoint(self.folder)
        self.cfg = cfg or read_checkpoint_config(self.root)
        self.metadata = dist_checkpointing.load_tensors_metadata(str(self.folder))
        self.layout = detect_layout(self.metadata)
        self.dtype = self.metadata[model_mappings(self.cfg)[0].checkpoint_key(layout=self.layout)].dtype
        self._strategy = TorchDistLoadShardedStrategy()

    def check(self) -> None:
        """Every mapped tensor is present with the shape ``cfg`` implies."""
        for m in model_mappings(self.cfg):
            for layer in range(self.cfg.n_layers) if m.per_layer and self.layout != GPT else [0]:
                key = m.checkpoint_key(layer, self.layout)
                if key not in self.metadata:
                    raise CheckpointError(f"{self.folder}: tensor missing: {key}")
                stacked = m.per_layer and self.layout == GPT
                want = ((self.cfg.n_layers,) if stacked else ()) + logical_shape(m, self.cfg)
                have = tuple(self.metadata[key].global_shape)
                if have != want:
                    raise CheckpointError(
                        f"shape mismatch: {key} in {self.folder} has shape {list(have)}, "
                        f"{CONFIG_FILE} implies {list(want)}"
                    )

    def read(self, m: TensorMapping, layer: int | None) -> torch.Tensor:
        """The logical tensor of mapping ``m`` (block ``layer``'s for per-block tensors)."""
        shape = logical_shape(m, self.cfg)
        key = m.checkpoint_key(layer, self.layout)
        meta = self.metadata[key]
        if m.per_layer and self.layout == GPT:  # one slice of the stacked tensor
            buf = torch.empty((1, *shape), dtype=meta.dtype)
            sh = ShardedTensor.from_rank_offsets(key, buf, (0, layer, self.cfg.n_layers), replica_id=0)
            return self._strategy.load({"t": sh}, self.folder)["t"][0]
        buf = torch.empty(shape, dtype=meta.dtype)
        sh = ShardedTensor.from_rank_offsets(key, buf, replica_id=0)
        return self._strategy.load({"t": sh}, self.folder)["t"]
