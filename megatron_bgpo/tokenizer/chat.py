"""LLaDA chat formatting (spec §1.5): a built-in renderer and a jinja renderer for checkpoint templates.

Llama-3 style headers; BOS only before the first message; each message's content is
whitespace-trimmed; the assistant header is always appended. ``render_chat`` is identical to the chat
template in LLaDA-8B-Instruct's ``tokenizer_config.json`` (checked by a test that renders the real
template), so SentencePiece models and tests need no jinja. ``render_chat_template`` renders any
checkpoint's jinja ``chat_template`` the way ``transformers`` does (sandboxed, trim/lstrip blocks).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from megatron_bgpo.tokenizer.constants import (
    LLADA_BOS_TOKEN,
    LLADA_END_HEADER_TOKEN,
    LLADA_EOS_TOKEN,
    LLADA_EOT_TOKEN,
    LLADA_START_HEADER_TOKEN,
)

BOS = LLADA_BOS_TOKEN
START_HEADER = LLADA_START_HEADER_TOKEN
END_HEADER = LLADA_END_HEADER_TOKEN
EOT = LLADA_EOT_TOKEN

# The d1 evaluation prefill: generation starts inside the reasoning section.
REASONING_PREFILL = "<reasoning>"

Messages = Sequence[Mapping[str, str]]


def _check_messages(messages: Messages, who: str) -> None:
    if not messages:
        raise ValueError(f"{who}: a conversation needs at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            keys = sorted(message) if isinstance(message, Mapping) else type(message).__name__
            raise ValueError(f"{who}: message {i} needs 'role' and 'content', got {keys}")


def render_chat(messages: Messages, bos_token: str = BOS, prefill: str = "") -> str:
    """Render ``[{"role": ..., "content": ...}, ...]`` as LLaDA's template does, plus an optional prefill."""
    _check_messages(messages, "render_chat")
    parts: list[str] = []
    for i, message in enumerate(messages):
        text = f"{START_HEADER}{message['role']}{END_HEADER}\n\n{message['content'].strip()}{EOT}"
        parts.append(bos_token + text if i == 0 else text)
    parts.append(f"{START_HEADER}assistant{END_HEADER}\n\n")
    return "".join(parts) + prefill


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise ValueError(f"chat_template is not valid jinja (line {err.lineno}): {err.message}") from err


def render_chat_template(
    template: str,
    messages: Messages,
    *,
    bos_token: str = BOS,
    eos_token: str = LLADA_EOS_TOKEN,
    prefill: str = "",
    **extra: Any,
) -> str:
    """Render a jinja ``chat_template`` with a generation prompt (as HF does), plus ``prefill``.

    ``extra`` is passed to the template as further variables (e.g. ``pad_token``).
    """
    _check_messages(messages, "render_chat_template")
    variables = dict(extra, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=True)
    messages_list = [dict(m) for m in messages]
    return _compile(template).render(messages=messages_list, **variables) + prefill
