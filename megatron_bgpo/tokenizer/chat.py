"""LLaDA chat formatting (spec §1.5), built in so SentencePiece models and tests need no jinja.

Llama-3 style headers; BOS only before the first message; each message's content is
whitespace-trimmed; the assistant header is always appended. Identical to the chat template in
LLaDA-8B-Instruct's ``tokenizer_config.json`` (checked by a test that renders the real template).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

BOS = "<|startoftext|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"

# The d1 evaluation prefill: generation starts inside the reasoning section.
REASONING_PREFILL = "<reasoning>"


def render_chat(messages: Sequence[Mapping[str, str]], bos_token: str = BOS, prefill: str = "") -> str:
    """Render ``[{"role": ..., "content": ...}, ...]`` as LLaDA's template does, plus an optional prefill."""
    if not messages:
        raise ValueError("render_chat: a conversation needs at least one message")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if "role" not in message or "content" not in message:
            raise ValueError(f"render_chat: message {i} needs 'role' and 'content', got keys {sorted(message)}")
        text = f"{START_HEADER}{message['role']}{END_HEADER}\n\n{message['content'].strip()}{EOT}"
        parts.append(bos_token + text if i == 0 else text)
    parts.append(f"{START_HEADER}assistant{END_HEADER}\n\n")
    return "".join(parts) + prefill
