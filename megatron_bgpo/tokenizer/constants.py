"""LLaDA-8B-Instruct tokenizer constants (spec §1.5), defined once for the whole package.

Ids are those of the released HF tokenizer; ``LLADA_VOCAB_SIZE`` is the number of embedding rows of the
model (ids 126349-126463 are unused padding rows; the tokenizer itself has 126349 ids).
"""

from __future__ import annotations

# Special token strings.
LLADA_BOS_TOKEN = "<|startoftext|>"
LLADA_EOS_TOKEN = "<|endoftext|>"  # also the padding token
LLADA_PAD_TOKEN = LLADA_EOS_TOKEN
LLADA_MASK_TOKEN = "<|mdm_mask|>"
LLADA_EOT_TOKEN = "<|eot_id|>"
LLADA_START_HEADER_TOKEN = "<|start_header_id|>"
LLADA_END_HEADER_TOKEN = "<|end_header_id|>"

# Special token ids.
LLADA_BOS_ID = 126080
LLADA_EOS_ID = 126081
LLADA_PAD_ID = LLADA_EOS_ID
LLADA_MASK_ID = 126336
LLADA_EOT_ID = 126348
LLADA_START_HEADER_ID = 126346
LLADA_END_HEADER_ID = 126347

LLADA_VOCAB_SIZE = 126464  # embedding rows of LLaDA-8B (config.json vocab_size / embedding_size)
LLADA_TOKENIZER_SIZE = 126349  # ids the tokenizer defines (max id + 1)
LLADA_NUM_ADDED_TOKENS = 269  # entries of tokenizer_config.json's added_tokens_decoder (126080-126348)

# The named (non-reserved) special tokens of LLaDA, in id order. ``train_sentencepiece`` makes them
# user-defined symbols so that they are never split.
LLADA_NAMED_SPECIAL_TOKENS: tuple[str, ...] = (
    LLADA_BOS_TOKEN,
    LLADA_EOS_TOKEN,
    "[CLS]",
    "[gMASK]",
    LLADA_MASK_TOKEN,
    "<role>",
    "</role>",
    "<|arithmetic_start|>",
    "<|arithmetic_end|>",
    "<|number_start|>",
    "<|number_end|>",
    LLADA_START_HEADER_TOKEN,
    LLADA_END_HEADER_TOKEN,
    LLADA_EOT_TOKEN,
)


def llada_added_tokens() -> dict[int, str]:
    """LLaDA's 269 added tokens ``{id: content}`` (126080-126348), as in its ``added_tokens_decoder``.

    The reserved tokens are numbered 0-255 but ``<|reserved_token_252|>`` was replaced by the mask token.
    """
    tokens = {LLADA_BOS_ID: LLADA_BOS_TOKEN, LLADA_EOS_ID: LLADA_EOS_TOKEN}
    tokens.update({126082: "[CLS]", 126083: "[gMASK]"})
    for n in range(256):
        tokens[126084 + n] = LLADA_MASK_TOKEN if n == 252 else f"<|reserved_token_{n}|>"
    for offset, token in enumerate(LLADA_NAMED_SPECIAL_TOKENS[5:]):
        tokens[126340 + offset] = token
    return tokens


# ``chat_template`` of LLaDA-8B-Instruct's tokenizer_config.json, verbatim (a test compares it).
LLADA_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
)
