"""Load task records from local files (JSONL, JSON, CSV, parquet, any of them gzipped) or the hub.

Every record carries its location (``file:line`` for text formats, ``file: row N`` for parquet,
``file: item N`` for JSON that is not a top-level array) so that a malformed record is reported
precisely. A malformed record raises :class:`MalformedRecordError`, or, with
``skip_malformed=True``, is skipped and counted in :class:`LoadReport`. Blank lines of JSONL / CSV
files are not records and are ignored; nothing else is dropped.

Hub datasets: ``"hf:<name>"`` or ``"hf:<name>:<config>"`` loads ``split`` through the ``datasets``
library (optional dependency, network needed); local paths never touch it.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HUB_PREFIX = "hf:"
_JSON_LIST_KEYS = ("data", "examples", "problems", "rows", "records", "items")


class MalformedRecordError(ValueError):
    """A record that cannot be parsed or converted; ``location`` names the file and line/row."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


@dataclass(frozen=True)
class Record:
    data: dict[str, Any]
    location: str


@dataclass
class LoadReport:
    """What a load read: the source, how many examples it produced, and every skipped record."""

    source: str
    loaded: int = 0
    skipped: list[MalformedRecordError] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        text = f"{self.source}: {self.loaded} loaded, {self.n_skipped} malformed skipped"
        if self.skipped:
            text += " (first: " + str(self.skipped[0]) + ")"
        return text


@dataclass
class LoadedData[T]:
    """Typed examples plus the :class:`LoadReport`; behaves like a read-only sequence."""

    examples: list[T]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[T]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> T:
        return self.examples[i]


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    if ext not in formats:
        raise ValueError(
            f"{path}: unknown data format {ext!r} (use .jsonl, .json, .csv, .parquet, or .gz of them)"
        )
    return formats[ext]


def _jsonl(path: Path, lines: Iterator[str], first_line: int = 1) -> Iterator[Record | MalformedRecordError]:
    for lineno, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        loc = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield MalformedRecordError(loc, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            yield MalformedRecordError(loc, f"expected a JSON object, got {type(obj).__name__}")
        else:
            yield Record(obj, loc)


def _json(path: Path) -> Iterator[Record | MalformedRecordError]:
    with _open_text(path) as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):  # walk the array so that each element gets its line number
        decoder = json.JSONDecoder()
        idx = text.index("[") + 1
        n = len(text)
        while True:
            while idx < n and text[idx] in " \t\r\n,":
                idx += 1
            if idx >= n:
                raise MalformedRecordError(
                    f"{path}:{text.count(chr(10), 0, idx) + 1}", "unterminated JSON array"
                )
            if text[idx] == "]":
                return
            line = text.count("\n", 0, idx) + 1
            try:
                obj, idx = decoder.raw_decode(text, idx)
            except json.JSONDecodeError as exc:  # the rest of the file cannot be resynchronised
                raise MalformedRecordError(f"{path}:{exc.lineno}", f"invalid JSON ({exc.msg})") from None
            if isinstance(obj, dict):
                yield Record(obj, f"{path}:{line}")
            else:
                yield MalformedRecordError(
                    f"{path}:{line}", f"expected a JSON object, got {type(obj).__name__}"
                )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a .json file that is really JSON Lines (what `datasets` writes)
            yield from _jsonl(path, iter(text.splitlines()))
            return
        raise MalformedRecordError(f"{path}:{exc.lineno}", f"invalid JSON ({exc.msg})") from None
    if isinstance(obj, dict):
        key = next((k for k in _JSON_LIST_KEYS if isinstance(obj.get(k), list)), None)
        if key is not None:
            items = obj[key]
        elif obj and all(isinstance(v, list) for v in obj.values()):  # columnar {"col": [...], ...}
            lengths = {len(v) for v in obj.values()}
            if len(lengths) != 1:
                raise MalformedRecordError(
                    str(path), f"columnar JSON with unequal column lengths {sorted(lengths)}"
                )
            cols = list(obj)
            items = [dict(zip(cols, row, strict=True)) for row in zip(*obj.values(), strict=True)]
        else:
            items = [obj]
    else:
        raise MalformedRecordError(str(path), f"expected a JSON array or object, got {type(obj).__name__}")
    for i, item in enumerate(items, 1):
        loc = f"{path}: item {i}"
        if isinstance(item, dict):
            yield Record(item, loc)
        else:
            yield MalformedRecordError(loc, f"expected a JSON object, got {type(item).__name__}")


def _csv(path: Path) -> Iterator[Record | MalformedRecordError]:
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num + 1
        for row in reader:
            loc = f"{path}:{start}"
            start = reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield MalformedRecordError(loc, f"{len(row)} fields, header has {len(header)}")
            else:
                yield Record(dict(zip(header, row, strict=True)), loc)


def _parquet(path: Path) -> Iterator[Record | MalformedRecordError]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for i, row in enumerate(table.to_pylist(), 1):
        yield Record(row, f"{path}: row {i}")


def _hub(source: str, split: str) -> Iterator[Record | MalformedRecordError]:
    spec = source[len(HUB_PREFIX) :]
    name, _, config = spec.partition(":")
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            f"{source}: loading from the hub needs the optional `datasets` package "
            "(pip install 'megatron-bgpo[hub]'); or pass a local file"
        ) from exc
    ds = datasets.load_dataset(name, config or None, split=split)
    for i, row in enumerate(ds, 1):
        yield Record(dict(row), f"{source}[{split}]: row {i}")


def iter_records(source: str | os.PathLike, split: str = "train") -> Iterator[Record | MalformedRecordError]:
    """Yield records (or, for unparseable ones, the error) from a local file or ``hf:`` name."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        yield from _hub(source, split)
        return
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file (hub datasets are named 'hf:<name>[:<config>]')")
    fmt = _format_of(path)
    if fmt == "jsonl":
        with _open_text(path) as f:
            yield from _jsonl(path, iter(f))
    elif fmt == "json":
        yield from _json(path)
    elif fmt == "csv":
        yield from _csv(path)
    else:
        yield from _parquet(path)


def load_examples[T](
    source: str | os.PathLike | Sequence[dict[str, Any]],
    convert: Callable[[dict[str, Any], int], T],
    *,
    split: str = "train",
    skip_malformed: bool = False,
    limit: int | None = None,
    keep: Callable[[T], bool] | None = None,
) -> LoadedData[T]:
    """Read records and convert each with ``convert(record, position)`` (raising if malformed).

    ``position`` is the 0-based index of the record in the source, malformed records included.
    ``source`` may also be an in-memory list of dicts. ``keep`` filters converted examples (e.g. a
    split by id); filtered examples are by design not counted as skipped. ``limit`` stops after that
    many kept examples.
    """
    if isinstance(source, (str, os.PathLike)):
        report = LoadReport(str(source))
        records: Iterator[Record | MalformedRecordError] = iter_records(source, split)
    else:
        report = LoadReport("<records>")
        records = (Record(dict(r), f"<records>: item {i}") for i, r in enumerate(source, 1))
    examples: list[T] = []
    for position, rec in enumerate(records):
        if limit is not None and len(examples) >= limit:
            break
        if isinstance(rec, Record):
            try:
                example = convert(rec.data, position)
            except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
                rec = MalformedRecordError(rec.location, what)
            else:
                if keep is None or keep(example):
                    examples.append(example)
                continue
        if not skip_malformed:
            raise rec
        report.skipped.append(rec)
    report.loaded = len(examples)
    return LoadedData(examples, report)
