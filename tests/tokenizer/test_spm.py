"""SentencePiece backend: training on a generated corpus, lossless round trips, unsplit special tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from megatron_bgpo.tokenizer import SentencePieceTokenizer, SpecialTokens, load_tokenizer, train_sentencepiece
from megatron_bgpo.tokenizer.constants import LLADA_NAMED_SPECIAL_TOKENS

from .conftest import make_corpus

UNSEEN = [
    *make_corpus(20, seed=99),
    "Zoë's café: 12,345.6 × 7 = ?\n\n\tIndented  text, double  spaces, trailing space ",
    "😀 数学 \\frac{1}{2} <reasoning>\nx\n</reasoning>",
    " leading space",
]
SPECIALS = ["<|mdm_mask|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def test_special_ids(spm_tokenizer: SentencePieceTokenizer) -> None:
    tok = spm_tokenizer
    ids = [tok.bos_id, tok.eos_id, tok.mask_id, tok.eot_id]
    assert len(set(ids)) == 4 and all(0 < i < tok.vocab_size for i in ids)
    assert tok.pad_id == tok.eos_id
    assert tok.vocab_size == 600
    tok.check_model_vocab(tok.padded_vocab_size())


@pytest.mark.parametrize("text", UNSEEN)
def test_round_trip_unseen(spm_tokenizer: SentencePieceTokenizer, text: str) -> None:
    assert spm_tokenizer.decode(spm_tokenizer.encode(text)) == text


def test_compresses(spm_tokenizer: SentencePieceTokenizer) -> None:
    text = make_corpus(1, seed=5)[0]
    assert len(spm_tokenizer.encode(text)) < len(text) / 2  # learned pieces, not characters


@pytest.mark.parametrize("token", SPECIALS)
def test_special_tokens_never_split(spm_tokenizer: SentencePieceTokenizer, token: str) -> None:
    token_id = spm_tokenizer.token_to_id(token)
    assert token_id is not None and spm_tokenizer.encode(token) == [token_id]
    assert spm_tokenizer.encode(f"4{token}5") == [
        *spm_tokenizer.encode("4"),
        token_id,
        *spm_tokenizer.encode("5"),
    ]
    assert spm_tokenizer.encode(token * 3) == [token_id] * 3
    assert spm_tokenizer.encode(f"answer {token}\n").count(token_id) == 1


def test_decode_skips_specials_and_out_of_range(spm_tokenizer: SentencePieceTokenizer) -> None:
    tok = spm_tokenizer
    ids = tok.encode("<|startoftext|>hi there<|eot_id|><|mdm_mask|><|endoftext|>")
    assert tok.decode(ids, skip_special_tokens=True) == "hi there"
    assert tok.decode([*tok.encode("ok"), tok.vocab_size + 3]) == "ok"  # padded embedding row


def test_save_load_identical(spm_tokenizer: SentencePieceTokenizer, tmp_path: Path) -> None:
    spm_tokenizer.save_pretrained(tmp_path / "ckpt" / "tokenizer")
    config = json.loads((tmp_path / "ckpt" / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["mask_token"] == "<|mdm_mask|>" and config["eot_token"] == "<|eot_id|>"
    assert config["added_tokens_decoder"][str(spm_tokenizer.mask_id)]["content"] == "<|mdm_mask|>"
    for path in (
        tmp_path / "ckpt",
        tmp_path / "ckpt" / "tokenizer",
        tmp_path / "ckpt" / "tokenizer" / "tokenizer.model",
    ):
        loaded = load_tokenizer(path)
        assert isinstance(loaded, SentencePieceTokenizer)
        assert [loaded.encode(t) for t in UNSEEN] == [spm_tokenizer.encode(t) for t in UNSEEN]
        assert loaded.all_special_ids == spm_tokenizer.all_special_ids
        assert (loaded.mask_id, loaded.eot_id, loaded.vocab_size) == (
            spm_tokenizer.mask_id,
            spm_tokenizer.eot_id,
            spm_tokenizer.vocab_size,
        )
        assert loaded.chat_template == spm_tokenizer.chat_template


def test_unigram_and_soft_vocab_limit(tmp_path: Path) -> None:
    tok = train_sentencepiece(make_corpus(200, seed=3), 2000, tmp_path, model_type="unigram")
    assert tok.vocab_size <= 2000  # a small corpus gives fewer pieces than asked for
    text = UNSEEN[0]
    assert tok.decode(tok.encode(text)) == text and tok.encode("<|mdm_mask|>") == [tok.mask_id]


def test_train_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leaves no room"):
        train_sentencepiece(["abc"], 200, tmp_path)
    with pytest.raises(ValueError, match="no \\(non-empty\\) training texts"):
        train_sentencepiece(["", ""], 600, tmp_path)


def test_foreign_model_with_control_symbols(tmp_path: Path) -> None:
    """Special tokens that are control symbols (never matched by SentencePiece) are split out by us."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(make_corpus(200, seed=4)),
        model_prefix=str(tmp_path / "foreign"),
        vocab_size=400,
        control_symbols=list(LLADA_NAMED_SPECIAL_TOKENS),
        bos_id=-1,
        eos_id=-1,
        byte_fallback=True,
        minloglevel=2,
        num_threads=1,
    )
    tok = load_tokenizer(tmp_path / "foreign.model")
    assert tok.chat_template is None
    text = "hello<|mdm_mask|><|mdm_mask|>world<|eot_id|>"
    ids = tok.encode(text)
    assert ids.count(tok.mask_id) == 2 and ids.count(tok.eot_id) == 1
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "helloworld"


def test_missing_special_tokens(spm_tokenizer: SentencePieceTokenizer, tmp_path: Path) -> None:
    spm_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="special tokens not in the vocabulary: mask='<nope>'"):
        load_tokenizer(tmp_path, special_tokens=SpecialTokens(mask="<nope>"))
    with pytest.raises(ValueError, match="pad and mask tokens share id"):
        load_tokenizer(tmp_path, special_tokens=SpecialTokens(pad="<|mdm_mask|>"))


@pytest.mark.parametrize("content", [b"", b"\x00" * 16], ids=["empty", "zeros"])
def test_truncated_model_file_names_the_file(
    spm_tokenizer: SentencePieceTokenizer, tmp_path: Path, content: bytes
) -> None:
    """A ``tokenizer.model`` emptied by a kill during a copy: a ValueError naming it, not an IndexError."""
    spm_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(content)
    with pytest.raises(ValueError, match=f"{tmp_path / 'tokenizer.model'}: not a valid SentencePiece model"):
        load_tokenizer(tmp_path)
