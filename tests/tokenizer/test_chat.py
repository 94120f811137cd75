"""Chat rendering equals LLaDA's real jinja template (shared tokenizer_config.json)."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from megatron_bgpo.tokenizer import REASONING_PREFILL, load_tokenizer, render_chat, render_chat_template
from megatron_bgpo.tokenizer.constants import LLADA_CHAT_TEMPLATE

CONVERSATIONS = {
    "one_turn": [{"role": "user", "content": "What is 2 + 3?"}],
    "multi_turn": [
        {"role": "user", "content": "  Hi!\n"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Solve x + 1 = 3.\n\nShow your work.  "},
    ],
    "system": [
        {"role": "system", "content": "You are a math expert.\n"},
        {"role": "user", "content": "Compute 7 * 6."},
    ],
}


def reference(config: dict[str, Any], messages: list[dict[str, str]]) -> str:
    """The real template rendered with plain jinja2."""
    template = jinja2.Template(config["chat_template"])
    return template.render(messages=messages, bos_token=config["bos_token"], add_generation_prompt=True)


def test_builtin_one_turn_literal() -> None:
    assert render_chat(CONVERSATIONS["one_turn"], prefill=REASONING_PREFILL) == (
        "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<reasoning>"
    )


def test_constant_template_is_the_real_one(llada_config: dict[str, Any]) -> None:
    assert LLADA_CHAT_TEMPLATE == llada_config["chat_template"]


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("prefill", ["", REASONING_PREFILL])
def test_renderers_match_real_template(llada_config: dict[str, Any], name: str, prefill: str) -> None:
    messages = CONVERSATIONS[name]
    expected = reference(llada_config, messages) + prefill
    assert render_chat(messages, prefill=prefill) == expected
    assert render_chat_template(llada_config["chat_template"], messages, prefill=prefill) == expected


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_builtin_matches_constant_template(name: str) -> None:
    """Runs without ../shared/data: the built-in renderer equals the (verbatim) template constant."""
    messages = CONVERSATIONS[name]
    expected = render_chat_template(LLADA_CHAT_TEMPLATE, messages, prefill="<r>")
    assert render_chat(messages, prefill="<r>") == expected


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_tokenizers_render_like_real_template(llada_config, hf_tokenizer, spm_tokenizer, name: str) -> None:
    messages = CONVERSATIONS[name]
    expected = reference(llada_config, messages) + REASONING_PREFILL
    assert hf_tokenizer.chat_template == llada_config["chat_template"]  # jinja path
    assert hf_tokenizer.apply_chat_template(messages, prefill=REASONING_PREFILL) == expected
    assert spm_tokenizer.apply_chat_template(messages, prefill=REASONING_PREFILL) == expected


def test_builtin_used_without_template(spm_tokenizer, tmp_path) -> None:
    spm_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()  # a bare .model: LLaDA special names, no template
    bare = load_tokenizer(tmp_path)
    assert bare.chat_template is None and bare.mask_id == spm_tokenizer.mask_id
    assert bare.apply_chat_template(CONVERSATIONS["system"], "<reasoning>") == render_chat(
        CONVERSATIONS["system"], prefill="<reasoning>"
    )


@pytest.mark.parametrize("render", [render_chat, lambda m: render_chat_template(LLADA_CHAT_TEMPLATE, m)])
def test_bad_messages(render) -> None:
    with pytest.raises(ValueError, match="at least one message"):
        render([])
    with pytest.raises(ValueError, match="message 0 needs 'role' and 'content'"):
        render([{"content": "x"}])


def test_bad_template() -> None:
    with pytest.raises(ValueError, match="not valid jinja"):
        render_chat_template("{% for %}", CONVERSATIONS["one_turn"])
