"""Special ids and added tokens of the shared LLaDA config match the spec (§1.5) constants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from megatron_bgpo.tokenizer import SpecialTokens
from megatron_bgpo.tokenizer.constants import (
    LLADA_BOS_ID,
    LLADA_EOS_ID,
    LLADA_EOT_ID,
    LLADA_MASK_ID,
    LLADA_NUM_ADDED_TOKENS,
    LLADA_PAD_ID,
    LLADA_TOKENIZER_SIZE,
    LLADA_VOCAB_SIZE,
    llada_added_tokens,
)
from megatron_bgpo.tokenizer.hf import added_tokens_from_config

from .conftest import LLADA_DIR


def test_spec_values() -> None:
    assert (LLADA_MASK_ID, LLADA_EOS_ID, LLADA_PAD_ID, LLADA_EOT_ID, LLADA_BOS_ID) == (
        126336,
        126081,
        126081,
        126348,
        126080,
    )
    assert (LLADA_VOCAB_SIZE, LLADA_TOKENIZER_SIZE, LLADA_NUM_ADDED_TOKENS) == (126464, 126349, 269)
    added = llada_added_tokens()
    assert len(added) == 269 and sorted(added) == list(range(126080, 126349))
    assert added[LLADA_MASK_ID] == "<|mdm_mask|>" and added[LLADA_EOT_ID] == "<|eot_id|>"


def test_shared_config_added_tokens(llada_config: dict[str, Any]) -> None:
    added = added_tokens_from_config(llada_config)
    assert len(added) == LLADA_NUM_ADDED_TOKENS
    assert {i: e["content"] for i, e in added.items()} == llada_added_tokens()
    assert all(e["special"] for e in added.values())
    by_name = {e["content"]: i for i, e in added.items()}
    special = SpecialTokens.from_config(llada_config)
    assert special == SpecialTokens()  # LLaDA defaults (mask/eot are not in the config)
    ids = {name: by_name[getattr(special, name)] for name in ("bos", "eos", "pad", "mask", "eot")}
    assert ids == dict(bos=126080, eos=126081, pad=126081, mask=126336, eot=126348)
    assert (by_name["<|start_header_id|>"], by_name["<|end_header_id|>"]) == (126346, 126347)
    assert max(added) + 1 == LLADA_TOKENIZER_SIZE
    assert not llada_config["add_bos_token"] and not llada_config["add_eos_token"]


def test_shared_model_configs() -> None:
    if not (LLADA_DIR / "config.json").is_file():
        pytest.skip(f"shared LLaDA config.json not found in {LLADA_DIR}")
    model = json.loads((LLADA_DIR / "config.json").read_text())
    generation = json.loads((LLADA_DIR / "generation_config.json").read_text())
    assert (model["mask_token_id"], model["eos_token_id"], model["pad_token_id"]) == (
        LLADA_MASK_ID,
        LLADA_EOS_ID,
        LLADA_PAD_ID,
    )
    assert model["vocab_size"] == model["embedding_size"] == LLADA_VOCAB_SIZE
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (LLADA_BOS_ID, LLADA_EOS_ID)
