"""HF LLaDA checkpoint folders: a validating, slice-reading reader and a streaming, by-type sharded writer.

Reader (`HFCheckpoint`): reads ``model.safetensors.index.json`` (or a single ``model.safetensors``),
parses every shard header up front and reports, naming the file and tensor: a shard the index names
that does not exist, a truncated shard, a tensor the index maps to a shard that lacks it, a tensor the
model needs that is missing, an unexpected tensor, a shape that disagrees with ``config.json``, and
a vocabulary (embedding rows) that disagrees with it. Tensors are then read slice by slice with
``safe_open(...).get_slice`` so a tensor-parallel rank only reads what it owns.

Writer (`write_hf_weights`): the real LLaDA checkpoint groups tensors by type, not by layer (spec
§1.2); tensors are laid out in that type order and cut into shards of at most ``shard_size`` bytes
(a tensor larger than that gets a shard of its own, as in HF). Each shard is written streaming: the
header is computed from shapes, then tensors are produced and written one at a time, so peak memory
is one tensor, not one shard. ``model.safetensors.index.json`` carries ``metadata.total_size``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from megatron_bgpo.checkpointing.mappings import (
    architecture_of,
    known_architectures,
    parse_config_in,
)
from megatron_bgpo.checkpointing.mappings.base import Reader, hf_shapes
from megatron_bgpo.checkpointing.mappings.llada import TYPE_ORDER  # noqa: F401  (re-exported)
from megatron_bgpo.models.llada.config import LLaDAConfig

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# The released checkpoints' auto_map (custom modeling code shipped in the folder).
LLADA_AUTO_MAP = {
    "AutoConfig": "configuration_llada.LLaDAConfig",
    "AutoModel": "modeling_llada.LLaDAModelLM",
    "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
}

# safetensors dtype strings <-> torch dtypes (the float types a LLaDA checkpoint can hold).
ST_DTYPES: dict[str, torch.dtype] = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
}
TORCH_TO_ST = {v: k for k, v in ST_DTYPES.items()}
DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


class CheckpointError(ValueError):
    """A checkpoint (HF or Megatron) or an output folder that cannot be converted; the message says why."""


def parse_size(text: str | int) -> int:
    """Bytes from ``5GB``, ``500MB``, ``2GiB``, ``1e9`` or an int (decimal units as HF uses them)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]i?B?|B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot parse size {text!r} (examples: 5GB, 500MB, 2GiB)")
    value, unit = float(match.group(1)), (match.group(2) or "B").upper().rstrip("B")
    base = 1024 if unit.endswith("I") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit.rstrip("I")]
    size = int(value * base**power)
    if size <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return size


def dtype_from_name(name: str) -> torch.dtype:
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def read_hf_config(hf_dir: str | os.PathLike) -> LLaDAConfig:
    """The `LLaDAConfig` of an HF folder; errors name an unknown architecture or a missing config."""
    return config_from_file(Path(hf_dir) / CONFIG_FILE, f"{hf_dir}: no {CONFIG_FILE}; not an HF model folder")


def config_from_file(path: Path, missing: str) -> LLaDAConfig:
    """The `LLaDAConfig` of ``path`` through the architecture registry (special tokens the config does
    not state from the tokenizer files beside it); a missing file raises CheckpointError(``missing``)."""
    if not path.is_file():
        raise CheckpointError(missing)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: malformed JSON ({exc})") from exc
    try:
        return parse_config_in(data, path.parent, str(path))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc


@dataclass(frozen=True)
class TensorInfo:
    name: str
    file: str
    dtype: torch.dtype
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse a shard header and check that the file holds every byte it announces."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"truncated shard {path}: {size} bytes, not even a header")
        header_len = struct.unpack("<Q", raw)[0]
        if 8 + header_len > size:
            raise CheckpointError(
                f"truncated shard {path}: header needs {8 + header_len} bytes, file has {size}"
            )
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"corrupt shard {path}: unreadable header ({exc})") from exc
    infos, end = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        infos[name] = TensorInfo(name, path.name, ST_DTYPES[entry["dtype"]], tuple(entry["shape"]))
        end = max(end, entry["data_offsets"][1])
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"truncated shard {path}: tensors need {8 + header_len + end} bytes, file has {size} "
            "(incomplete download or copy?)"
        )
    return infos


class HFCheckpoint:
    """An HF safetensors folder: validated layout, tensor metadata, sliced reads."""

    def __init__(self, hf_dir: str | os.PathLike) -> None:
        self.dir = Path(hf_dir)
        if not self.dir.is_dir():
            raise CheckpointError(f"HF checkpoint folder not found: {self.dir}")
        index_path = self.dir / INDEX_FILE
        if index_path.is_file():
            try:
                weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index_path}: malformed index ({exc!r})") from exc
        elif (self.dir / SINGLE_FILE).is_file():
            weight_map = {name: SINGLE_FILE for name in read_safetensors_header(self.dir / SINGLE_FILE)}
        else:
            raise CheckpointError(f"{self.dir}: neither {INDEX_FILE} nor {SINGLE_FILE} found")
        headers: dict[str, dict[str, TensorInfo]] = {}
        for file in sorted(set(weight_map.values())):
            if not (self.dir / file).is_file():
                users = sorted(n for n, f in weight_map.items() if f == file)
                raise CheckpointError(
                    f"missing shard: {INDEX_FILE} names {file}, which is not in {self.dir} "
                    f"(it should hold {len(users)} tensors, e.g. {users[0]})"
                )
            headers[file] = read_safetensors_header(self.dir / file)
        self.tensors: dict[str, TensorInfo] = {}
        for name, file in weight_map.items():
            if name not in headers[file]:
                raise CheckpointError(f"{INDEX_FILE} maps {name} to {file}, but that shard lacks it")
            self.tensors[name] = headers[file][name]

    @property
    def files(self) -> list[str]:
        return sorted({t.file for t in self.tensors.values()})

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (the embedding's; the checkpoints use one dtype throughout)."""
        for arch in known_architectures():
            if arch.hf_prefix + arch.embedding in self.tensors:
                return self.tensors[arch.hf_prefix + arch.embedding].dtype
        return next(iter(self.tensors.values())).dtype

    def check(self, cfg: LLaDAConfig) -> None:
        """Raise `CheckpointError` unless the tensors are exactly those of ``cfg`` with its shapes."""
        expected, arch = hf_shapes(cfg), architecture_of(cfg)
        missing = [n for n in expected if n not in self.tensors]
        if missing:
            raise CheckpointError(
                f"{self.dir}: tensor missing: {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        unexpected = sorted(set(self.tensors) - set(expected))
        if unexpected:
            raise CheckpointError(
                f"{self.dir}: unexpected tensors {unexpected[:4]} (not a {arch.name} llama-block checkpoint, "
                f"or config.json has fewer layers than the weights"
                + (", or a tied output layer stored as well" if cfg.weight_tying else "")
                + ")"
            )
        for name in (arch.hf_prefix + arch.embedding, arch.hf_prefix + arch.output):
            if name in expected and self.tensors[name].shape[0] != cfg.embedding_size:
                raise CheckpointError(
                    f"vocab mismatch: {name} has {self.tensors[name].shape[0]} rows but config.json says "
                    f"embedding_size={cfg.embedding_size} (vocab_size={cfg.vocab_size})"
                )
        for name, shape in expected.items():
            if self.tensors[name].shape != shape:
                raise CheckpointError(
                    f"shape mismatch: {name} in {self.tensors[name].file} has shape "
                    f"{list(self.tensors[name].shape)}, config.json implies {list(shape)}"
                )

    def read(self, name: str, dim: int | None = None, start: int = 0, stop: int = 0) -> torch.Tensor:
        """Tensor ``name`` (full HF name), or rows/columns ``[start, stop)`` of dimension ``dim``.

        The shard is memory-mapped only for the duration of the read: a mapping kept open would keep
        every page read so far in this process's resident set.
        """
        if name not in self.tensors:
            raise CheckpointError(f"{self.dir}: tensor missing: {name}")
        with safe_open(str(self.dir / self.tensors[name].file), framework="pt") as handle:
            if dim is None:
                return handle.get_tensor(name)
            index = tuple(slice(start, stop) if d == dim else slice(None) for d in range(dim + 1))
            return handle.get_slice(name)[index]

    def reader(self, cfg: LLaDAConfig | None = None) -> Reader:
        """A mapping `Reader` (names without the ``hf_prefix`` of ``cfg``'s architecture, LLaDA's default)."""
        prefix = architecture_of(cfg).hf_prefix if cfg is not None else "model.transformer."
        return lambda name, dim, start, stop: self.read(prefix + name, dim, start, stop)

    def close(self) -> None:
        """Nothing stays open between reads; kept so callers can release the reader explicitly."""


# ----------------------------------------------------------------------------------------- writing


def type_ordered_names(cfg: LLaDAConfig) -> list[str]:
    """Every HF tensor name of ``cfg`` in its architecture's shard order (LLaDA: the released by-type
    order)."""
    shapes, arch = hf_shapes(cfg), architecture_of(cfg)
    names: list[str] = []
    for pattern in arch.type_order:
        layers = range(cfg.n_layers) if "{i}" in pattern else [None]
        names += [n for n in (arch.hf_prefix + pattern.format(i=i) for i in layers) if n in shapes]
    assert sorted(names) == sorted(shapes), f"type_order of {arch.name} does not cover every tensor"
    return names


def plan_shards(sizes: Iterable[tuple[str, int]], shard_size: int) -> list[list[str]]:
    """Cut an ordered list of (name, bytes) into shards of at most ``shard_size`` bytes (HF's rule)."""
    shards: list[list[str]] = []
    current, current_size = [], 0
    for name, nbytes in sizes:
        if current and current_size + nbytes > shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += nbytes
    if current:
        shards.append(current)
    return shards


def shard_file_name(index: int, count: int) -> str:
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def write_safetensors_streaming(
    path: Path,
    entries: list[tuple[str, tuple[int, ...]]],
    dtype: torch.dtype,
    produce: Callable[[str], torch.Tensor],
) -> int:
    """Write one safetensors file whose tensors come from ``produce(name)`` one at a time; returns bytes.

    The header (offsets) is computed from the shapes first, so no more than one tensor is in memory.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        nbytes = math.prod(shape) * itemsize
        header[name] = {
            "dtype": TORCH_TO_ST[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in entries:
            tensor = produce(name)
            if tuple(tensor.shape) != tuple(shape):
                raise CheckpointError(f"{name}: produced shape {list(tensor.shape)}, expected {list(shape)}")
            data = tensor.detach().to("cpu", dtype).contiguous()
            f.write(memoryview(data.view(torch.uint8).reshape(-1).numpy()))
            del data, tensor
    return offset


def write_hf_weights(
    out_dir: str | os.PathLike,
    cfg: LLaDAConfig,
    produce: Callable[[str], torch.Tensor],
    dtype: torch.dtype,
    shard_size: int | str = "5GB",
) -> dict[str, object]:
    """Write the weights of ``cfg`` as by-type safetensors shards + index into ``out_dir``; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shapes = hf_shapes(cfg)
    itemsize = torch.empty((), dtype=dtype).element_size()
    names = type_ordered_names(cfg)
    shards = plan_shards(((n, math.prod(shapes[n]) * itemsize) for n in names), parse_size(shard_size))
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards):
        file = shard_file_name(i, len(shards))
        total += write_safetensors_streaming(out / file, [(n, shapes[n]) for n in shard], dtype, produce)
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return index


def expected_bytes(cfg: LLaDAConfig, dtype: torch.dtype) -> int:
    return cfg.num_parameters * torch.empty((), dtype=dtype).element_size()


def check_disk_space(target: str | os.PathLike, needed: int, margin: float = 1.05) -> None:
    """Raise `CheckpointError` when the filesystem that will hold ``target`` has < ``needed`` bytes free."""
    probe = Path(target).absolute()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * margin:
        raise CheckpointError(
            f"not enough disk space for {target}: need about {format_bytes(needed)}, "
            f"{format_bytes(free)} free on the filesystem of {probe}"
        )


def format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
