"""Tokenizers and chat formatting: LLaDA's HF tokenizer and SentencePiece models behind one interface.

Decision on megatron-core 0.19's ``megatron.core.tokenizers``: not built upon. Its HF wrapper needs
``transformers`` (not a dependency; we load ``tokenizer.json`` with ``tokenizers`` offline), its loader
requires a Megatron ``metadata.json``, its SentencePiece wrapper adds whitespace/legacy special-token
handling that would break lossless round trips, and neither knows the mask/EOT ids the diffusion code
needs. Megatron-Core models take only a vocab size, so nothing there needs its tokenizer objects.

Usage::

    tok = load_tokenizer("path/to/checkpoint")          # HF folder, .model file, or ckpt with tokenizer/
    tok.check_model_vocab(model_vocab_size)
    prompt = tok.apply_chat_template([{"role": "user", "content": q}], prefill=REASONING_PREFILL)
    batch = tok.batch_encode([prompt, ...])              # left-padded input_ids/attention_mask/position_ids
"""

from megatron_bgpo.tokenizer.base import EncodedBatch, SpecialTokens, Tokenizer, pad_batch, read_config
from megatron_bgpo.tokenizer.chat import REASONING_PREFILL, render_chat, render_chat_template
from megatron_bgpo.tokenizer.constants import (
    LLADA_BOS_ID,
    LLADA_CHAT_TEMPLATE,
    LLADA_EOS_ID,
    LLADA_EOT_ID,
    LLADA_MASK_ID,
    LLADA_PAD_ID,
    LLADA_TOKENIZER_SIZE,
    LLADA_VOCAB_SIZE,
)
from megatron_bgpo.tokenizer.hf import HFTokenizer
from megatron_bgpo.tokenizer.loader import CHECKPOINT_SUBDIR, load_tokenizer
from megatron_bgpo.tokenizer.spm import SentencePieceTokenizer, train_sentencepiece

__all__ = [
    "CHECKPOINT_SUBDIR",
    "EncodedBatch",
    "HFTokenizer",
    "LLADA_BOS_ID",
    "LLADA_CHAT_TEMPLATE",
    "LLADA_EOS_ID",
    "LLADA_EOT_ID",
    "LLADA_MASK_ID",
    "LLADA_PAD_ID",
    "LLADA_TOKENIZER_SIZE",
    "LLADA_VOCAB_SIZE",
    "REASONING_PREFILL",
    "SentencePieceTokenizer",
    "SpecialTokens",
    "Tokenizer",
    "load_tokenizer",
    "pad_batch",
    "read_config",
    "render_chat",
    "render_chat_template",
    "train_sentencepiece",
]
