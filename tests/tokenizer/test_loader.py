"""load_tokenizer path resolution and errors; model vocab checks."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from megatron_bgpo.tokenizer import load_tokenizer

from .conftest import LLADA_DIR


def test_vocab_check(spm_tokenizer, hf_tokenizer) -> None:
    spm_tokenizer.check_model_vocab(spm_tokenizer.vocab_size)
    spm_tokenizer.check_model_vocab(spm_tokenizer.vocab_size + 64)  # padded rows are fine
    with pytest.raises(ValueError, match="model vocab size 599 is smaller than the tokenizer's 600 ids"):
        spm_tokenizer.check_model_vocab(599)
    with pytest.raises(ValueError, match="at least 126349 embedding rows"):
        hf_tokenizer.check_model_vocab(126336)  # would not even embed the mask token


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'} does not exist"):
        load_tokenizer(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=f"no tokenizer.json or SentencePiece .model file in {tmp_path}"
    ):
        load_tokenizer(tmp_path)


def test_config_only_folder() -> None:
    if not LLADA_DIR.is_dir():
        pytest.skip(f"shared LLaDA folder not found at {LLADA_DIR}")
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json alone is not enough"):
        load_tokenizer(LLADA_DIR)


def test_malformed_files(spm_tokenizer, tmp_path: Path) -> None:
    spm_tokenizer.save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"a/tokenizer_config\.json: malformed JSON"):
        load_tokenizer(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"b/tokenizer\.model: not a valid SentencePiece model"):
        load_tokenizer(tmp_path / "b")
    with pytest.raises(ValueError, match="neither a tokenizer.json nor"):
        load_tokenizer(tmp_path / "a" / "tokenizer_config.json")


def test_ambiguous_models(spm_tokenizer, tmp_path: Path) -> None:
    spm_tokenizer.save_pretrained(tmp_path / "src")
    for name in ("x.model", "y.model"):
        shutil.copyfile(tmp_path / "src" / "tokenizer.model", tmp_path / name)
    with pytest.raises(ValueError, match=r"several SentencePiece models .* \(x.model, y.model\)"):
        load_tokenizer(tmp_path)


def test_pickle(spm_tokenizer, hf_tokenizer) -> None:
    """Tokenizers cross process boundaries (spawned workers) intact."""
    for tok in (spm_tokenizer, hf_tokenizer):
        copy = pickle.loads(pickle.dumps(tok))
        text = "Janet has 3 <|mdm_mask|><|eot_id|>"
        assert copy.encode(text) == tok.encode(text) and copy.mask_id == tok.mask_id
