"""HF backend on a small byte-level BPE tokenizer.json with LLaDA's 269 added tokens at their real ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_bgpo.tokenizer import HFTokenizer, load_tokenizer
from megatron_bgpo.tokenizer.constants import LLADA_TOKENIZER_SIZE, LLADA_VOCAB_SIZE, llada_added_tokens

from .conftest import make_corpus

TEXTS = [
    "Janet has 16 eggs.\n\nShe eats  three   for breakfast.\t(tab) ",
    "Ünïcödé — 数学 😀 \\boxed{42} <answer>\n7\n</answer>",
    "",
    *make_corpus(5, seed=7),
]


def test_special_ids_and_vocab(hf_tokenizer: HFTokenizer) -> None:
    tok = hf_tokenizer
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.mask_id, tok.eot_id) == (
        126080,
        126081,
        126081,
        126336,
        126348,
    )
    assert tok.vocab_size == LLADA_TOKENIZER_SIZE
    assert tok.padded_vocab_size() == LLADA_VOCAB_SIZE
    tok.check_model_vocab(LLADA_VOCAB_SIZE)
    assert set(llada_added_tokens()) <= tok.all_special_ids


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(hf_tokenizer: HFTokenizer, text: str) -> None:
    assert hf_tokenizer.decode(hf_tokenizer.encode(text)) == text


def test_every_added_token_is_one_id(hf_tokenizer: HFTokenizer) -> None:
    for token_id, token in llada_added_tokens().items():
        assert hf_tokenizer.encode(token) == [token_id], token
        assert hf_tokenizer.encode(f"x{token}y")[1:-1] == [token_id], token


def test_chat_prompt_ids(hf_tokenizer: HFTokenizer) -> None:
    prompt = hf_tokenizer.apply_chat_template([{"role": "user", "content": "2+3?"}], prefill="<reasoning>")
    ids = hf_tokenizer.encode(prompt)
    assert ids[:2] == [126080, 126346] and 126347 in ids and 126348 in ids
    assert ids.count(126080) == 1  # BOS only once, never added by encode
    canvas = ids + [126336] * 4 + [126081]
    assert hf_tokenizer.decode(canvas, skip_special_tokens=True).endswith("2+3?assistant\n\n<reasoning>")
    assert hf_tokenizer.decode(canvas).endswith("<|mdm_mask|>" * 4 + "<|endoftext|>")


def test_save_and_reload(hf_tokenizer: HFTokenizer, tmp_path: Path) -> None:
    hf_tokenizer.save_pretrained(tmp_path / "ckpt" / "tokenizer")
    config = json.loads((tmp_path / "ckpt" / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["mask_token"] == "<|mdm_mask|>" and config["chat_template"] == hf_tokenizer.chat_template
    reloaded = load_tokenizer(tmp_path / "ckpt")
    assert isinstance(reloaded, HFTokenizer)
    assert [reloaded.encode(t) for t in TEXTS] == [hf_tokenizer.encode(t) for t in TEXTS]
    assert (reloaded.mask_id, reloaded.vocab_size) == (hf_tokenizer.mask_id, hf_tokenizer.vocab_size)


def test_tokenizer_json_without_config(hf_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert tok.chat_template is None and tok.mask_id == 126336  # LLaDA defaults, built-in chat
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]).startswith("<|startoftext|>")


def test_config_disagreeing_with_tokenizer_json(hf_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    config = {"added_tokens_decoder": {"126337": {"content": "<|mdm_mask|>", "special": True}}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has id 126336 in tokenizer.json but 126337"):
        load_tokenizer(tmp_path)


def test_config_adds_missing_token(hf_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    config = {"added_tokens_decoder": {"126349": {"content": "<|new|>", "special": True}}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(tmp_path)
    assert tok.encode("<|new|>") == [126349] and tok.vocab_size == 126350


def test_malformed_tokenizer_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a valid tokenizers"):
        load_tokenizer(tmp_path)
