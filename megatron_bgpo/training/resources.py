"""Resolve what a run starts from: model architecture, tokenizer, train/eval examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megatron_bgpo.checkpointing.megatron_io import CONFIG_FILE, TRACKER_FILE, read_checkpoint_config
from megatron_bgpo.models.llada import PRESETS, LLaDAConfig
from megatron_bgpo.tasks import Task
from megatron_bgpo.tasks.sudoku import SudokuTask, generate_puzzles
from megatron_bgpo.tokenizer import Tokenizer, load_tokenizer
from megatron_bgpo.training.config import TrainConfig


def resolve_model(cfg: TrainConfig) -> LLaDAConfig:
    """The architecture: the config stored with ``--load`` if any, else ``--model`` (preset, config.json,
    HF folder, or Megatron checkpoint folder)."""
    load = cfg.checkpoint.load
    if load and (Path(load) / CONFIG_FILE).is_file():
        return read_checkpoint_config(load)
    name = cfg.model.model
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if (path / TRACKER_FILE).is_file():
        return read_checkpoint_config(path)
    if path.exists():
        return LLaDAConfig.from_json(path)
    raise ValueError(f"--model {name!r} is neither a preset ({sorted(PRESETS)}) nor an existing path")


def resolve_tokenizer(cfg: TrainConfig) -> Tokenizer:
    """``--tokenizer``, else the tokenizer stored with ``--load``, else the one in the ``--model`` folder."""
    candidates = [cfg.data.tokenizer, cfg.checkpoint.load, cfg.model.model]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            try:
                return load_tokenizer(candidate)
            except FileNotFoundError:
                if candidate == cfg.data.tokenizer:
                    raise
    raise ValueError(
        "no tokenizer found: pass --tokenizer (an HF tokenizer folder, a SentencePiece .model, or a "
        f"checkpoint folder with tokenizer/); looked in {[c for c in candidates if c]}"
    )


def load_examples(task: Task, source: str | None, split: str, seed: int) -> list[Any]:
    """Examples of ``split`` from ``source``; without a source, tasks with a generator (Sudoku) generate
    puzzles (train and eval sets from different seeds), others need a path or hub name."""
    if source is None and isinstance(task, SudokuTask):  # sudoku and sudoku_brief
        return generate_puzzles(2000 if split == "train" else 256, seed=seed * 2 + (split != "train"))
    if source is None:
        raise ValueError(
            f"task {task.name!r} needs --{split.replace('test', 'eval')}-data (a local file or hf: name)"
        )
    return list(task.load(source, split=split).examples)
