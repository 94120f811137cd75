"""Loader: formats, locations of malformed records, skip-and-count, nothing silently dropped."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_bgpo.tasks import MalformedRecordError, get_task
from megatron_bgpo.tasks.io import iter_records, load_examples

GOOD = {"question": "1+1?", "answer": "two #### 2"}


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl", [json.dumps(GOOD), "", json.dumps(GOOD), "{not json", json.dumps(GOOD)]
    )
    with pytest.raises(MalformedRecordError) as err:
        get_task("gsm8k").load(path)
    assert err.value.location == f"{path}:4"
    assert str(path) in str(err.value) and ":4:" in str(err.value)


def test_schema_error_names_line_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps(GOOD), json.dumps({"question": "q"})])
    with pytest.raises(MalformedRecordError, match=r"d\.jsonl:2: missing field 'answer'"):
        get_task("gsm8k").load(path)
    path = write_jsonl(tmp_path / "e.jsonl", [json.dumps({"question": "q", "answer": "no final answer"})])
    with pytest.raises(MalformedRecordError, match=r"e\.jsonl:1: ValueError: .*####"):
        get_task("gsm8k").load(path)


def test_skip_malformed_counts_every_skipped_record(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD), "{bad", json.dumps({"q": 1}), "[1, 2]", json.dumps(GOOD)]
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    data = get_task("gsm8k").load(path, skip_malformed=True)
    assert len(data) == 2 and data.report.loaded == 2 and data.report.n_skipped == 3
    assert [e.location for e in data.report.skipped] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert "2 loaded, 3 malformed skipped" in data.report.summary()
    assert [e.id for e in data] == ["gsm8k-0", "gsm8k-4"]  # ids by record position when absent


def test_json_array_elements_get_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"question": "a", "answer": "#### 1"},\n  {"question": "b"}\n]\n', encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"d\.json:3: missing field 'answer'"):
        get_task("gsm8k").load(path)
    path.write_text('[\n  {"question": "a", "answer": "#### 1"},\n  {"question": "b", \n]', encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"d\.json:4: invalid JSON"):
        get_task("gsm8k").load(path, skip_malformed=True)  # unparseable JSON cannot be skipped


def test_json_layouts(tmp_path: Path) -> None:
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"data": [GOOD, GOOD]}), encoding="utf-8")
    columnar = tmp_path / "c.json"
    columnar.write_text(
        json.dumps({"question": ["a", "b"], "answer": ["#### 1", "#### 2"]}), encoding="utf-8"
    )
    lines = tmp_path / "l.json"  # JSON Lines saved as .json (what `datasets` writes)
    write_jsonl(lines, [json.dumps(GOOD)] * 3)
    task = get_task("gsm8k")
    assert len(task.load(wrapped)) == 2
    assert [e.answer for e in task.load(columnar)] == ["1", "2"]
    assert len(task.load(lines)) == 3
    assert next(iter_records(wrapped)).location == f"{wrapped}: item 1"


def test_csv_parquet_gzip(tmp_path: Path) -> None:
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("Puzzle,Solution\n3102200002100320,3142243142131324\n\n1,2,3\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"s\.csv:4: 3 fields, header has 2"):
        get_task("sudoku").load(csv_path)
    assert len(get_task("sudoku").load(csv_path, skip_malformed=True)) == 1
    bad_grid = tmp_path / "b.csv"
    bad_grid.write_text("Puzzle,Solution\n3102200002100320,3142243142131323\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=r"b\.csv:2: ValueError: solution"):
        get_task("sudoku").load(bad_grid)

    pq_path = tmp_path / "c.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"nums": [1, 2, 3], "target": 6}, {"nums": [4], "target": None}]), pq_path
    )
    with pytest.raises(MalformedRecordError, match=r"c\.parquet: row 2: TypeError"):
        get_task("countdown").load(pq_path)

    gz = tmp_path / "d.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    assert len(get_task("gsm8k").load(gz)) == 2


def test_records_limit_unknown_format_missing_file(tmp_path: Path) -> None:
    data = load_examples([{"a": 1}, {"a": 2}, {"a": 3}], lambda r, i: r["a"], limit=2)
    assert data.examples == [1, 2]
    with pytest.raises(MalformedRecordError, match=r"<records>: item 2: missing field 'a'"):
        load_examples([{"a": 1}, {"b": 2}], lambda r, i: r["a"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown data format"):
        get_task("gsm8k").load(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="hf:"):
        get_task("gsm8k").load(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="no default source"):
        get_task("sudoku").load()


def test_hub_needs_datasets_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed; never touches the network
    with pytest.raises(ImportError, match="datasets"):
        get_task("gsm8k").load("hf:openai/gsm8k:main")


def test_registry() -> None:
    from megatron_bgpo.tasks import TASKS

    assert set(TASKS) == {
        "gsm8k", "math", "math500", "countdown", "sudoku", "sudoku_brief", "humaneval", "mbpp", "code"
    }  # fmt: skip
    assert get_task("GSM8K", reward_mode="d1").max_reward == 4.0
    with pytest.raises(KeyError, match="known"):
        get_task("nope")
    with pytest.raises(ValueError):
        get_task("gsm8k", prompt_style="fancy")
