"""``load_tokenizer``: one entry point from a tokenizer folder, a ``.model`` file or a checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from megatron_bgpo.tokenizer.base import CONFIG_FILE, SpecialTokens, Tokenizer, read_config
from megatron_bgpo.tokenizer.hf import TOKENIZER_FILE, HFTokenizer
from megatron_bgpo.tokenizer.spm import MODEL_FILE, SentencePieceTokenizer

# Sub-folder of a checkpoint where the trainer and the converter store the tokenizer files.
CHECKPOINT_SUBDIR = "tokenizer"


def _sentencepiece_file(directory: Path) -> Path | None:
    """The ``.model`` of ``directory``: the sidecar's ``model_file``, ``tokenizer.model`` or the only one."""
    config_file = directory / CONFIG_FILE
    if config_file.is_file():
        named = read_config(config_file).get("model_file")
        if isinstance(named, str) and (directory / named).is_file():
            return directory / named
    if (directory / MODEL_FILE).is_file():
        return directory / MODEL_FILE
    models = sorted(p for p in directory.glob("*.model") if p.is_file())
    if len(models) > 1:
        names = ", ".join(p.name for p in models)
        raise ValueError(
            f"load_tokenizer: several SentencePiece models in {directory} ({names}); pass one file"
        )
    return models[0] if models else None


def load_tokenizer(path: str | Path, special_tokens: SpecialTokens | None = None) -> Tokenizer:
    """Load the tokenizer at ``path``.

    ``path`` may be an HF tokenizer folder (``tokenizer.json`` [+ ``tokenizer_config.json``]), a folder
    with a SentencePiece ``.model`` (+ sidecar config), a ``tokenizer.json`` or ``.model`` file, or a
    checkpoint folder holding either set of files directly or in its ``tokenizer/`` sub-folder.
    ``special_tokens`` overrides the special-token strings read from the config.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_tokenizer: {path} does not exist")
    if path.is_file():
        if path.suffix == ".model":
            return SentencePieceTokenizer.from_file(path, special_tokens)
        if path.suffix == ".json" and path.name != CONFIG_FILE:
            config_file = path.parent / CONFIG_FILE
            config = read_config(config_file) if config_file.is_file() else {}
            return HFTokenizer(path, config, special_tokens)
        raise ValueError(
            f"load_tokenizer: {path} is neither a tokenizer.json nor a SentencePiece .model file"
        )
    for directory in (path, path / CHECKPOINT_SUBDIR):
        if not directory.is_dir():
            continue
        if (directory / TOKENIZER_FILE).is_file():
            return HFTokenizer.from_dir(directory, special_tokens)
        model_file = _sentencepiece_file(directory)
        if model_file is not None:
            return SentencePieceTokenizer.from_file(model_file, special_tokens)
    hint = ""
    if (path / CONFIG_FILE).is_file() or (path / CHECKPOINT_SUBDIR / CONFIG_FILE).is_file():
        hint = (
            f" ({CONFIG_FILE} alone is not enough: the vocabulary lives in {TOKENIZER_FILE} or a .model file)"
        )
    raise FileNotFoundError(
        f"load_tokenizer: no {TOKENIZER_FILE} or SentencePiece .model file in {path} "
        f"or {path / CHECKPOINT_SUBDIR}{hint}"
    )
