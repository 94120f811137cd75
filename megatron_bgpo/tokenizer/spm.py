"""SentencePiece backend (``.model`` files) and ``train_sentencepiece`` for tiny models and CPU runs.

A model travels as ``tokenizer.model`` plus a ``tokenizer_config.json`` sidecar in the HF format
(``*_token`` strings, ``added_tokens_decoder``, ``chat_template``), so special ids and the chat
template load with it. Trained models are lossless: identity normalization, no whitespace folding,
no dummy prefix, byte fallback for unseen characters, digits split; the LLaDA special tokens are
user-defined symbols, so they are never split. Special tokens that a foreign model only has as control
symbols (which SentencePiece never matches in text) are split out of the text before encoding.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from megatron_bgpo.tokenizer.base import CONFIG_FILE, SpecialTokens, Tokenizer, read_config
from megatron_bgpo.tokenizer.constants import LLADA_CHAT_TEMPLATE, LLADA_NAMED_SPECIAL_TOKENS
from megatron_bgpo.tokenizer.hf import added_tokens_from_config, chat_template_from_config

MODEL_FILE = "tokenizer.model"
SENTENCEPIECE_CLASS = "SentencePieceTokenizer"


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (file or serialized proto) with an HF-style config (may be empty)."""

    def __init__(
        self,
        model: str | Path | bytes,
        config: dict[str, Any] | None = None,
        special_tokens: SpecialTokens | None = None,
        source: str | None = None,
    ) -> None:
        import sentencepiece as spm

        source = source or (str(model) if not isinstance(model, bytes) else "<sentencepiece proto>")
        try:
            self._proto = model if isinstance(model, bytes) else Path(model).read_bytes()
            self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        except (OSError, RuntimeError) as err:
            raise ValueError(f"{source}: not a valid SentencePiece model: {err}") from err
        if self._sp.get_piece_size() == 0:  # an empty file parses as a model without pieces
            raise ValueError(
                f"{source}: not a valid SentencePiece model ({len(self._proto)} bytes, no pieces; "
                "a truncated copy?); restore the file from the tokenizer the run started from"
            )
        self._config_in: dict[str, Any] = dict(config or {})
        try:
            self._added = added_tokens_from_config(self._config_in)
            template = chat_template_from_config(self._config_in)
        except ValueError as err:
            raise ValueError(f"tokenizer config for {source}: {err}") from err
        self.vocab_size = self._sp.get_piece_size()
        for token_id, entry in self._added.items():
            if self.token_to_id(entry["content"]) != token_id:
                raise ValueError(
                    f"{source}: added token {entry['content']!r} is not piece {token_id} of the model"
                )
        special = special_tokens or SpecialTokens.from_config(self._config_in)
        # Tokens SentencePiece does not match in text by itself (control symbols) are split out by regex.
        candidates = {getattr(special, n) for n in ("bos", "eos", "pad", "mask", "eot")}
        candidates |= {entry["content"] for entry in self._added.values()}
        self._split_ids: dict[str, int] = {}
        for token in candidates:
            token_id = self.token_to_id(token)
            if token_id is not None and self._sp.encode(token) != [token_id]:
                self._split_ids[token] = token_id
        self._split_pieces = {i: t for t, i in self._split_ids.items()}
        pattern = "|".join(re.escape(t) for t in sorted(self._split_ids, key=len, reverse=True))
        self._split_re = re.compile(f"({pattern})") if pattern else None
        super().__init__(special, template, source)

    @classmethod
    def from_file(
        cls, model_file: str | Path, special_tokens: SpecialTokens | None = None
    ) -> SentencePieceTokenizer:
        """Load a ``.model`` file with the ``tokenizer_config.json`` beside it, if any."""
        model_file = Path(model_file)
        config_file = model_file.parent / CONFIG_FILE
        config = read_config(config_file) if config_file.is_file() else {}
        return cls(model_file, config, special_tokens)

    def encode(self, text: str) -> list[int]:
        if self._split_re is None:
            return self._sp.encode(text)
        ids: list[int] = []
        for part in self._split_re.split(text):
            if part in self._split_ids:
                ids.append(self._split_ids[part])
            elif part:
                ids.extend(self._sp.encode(part))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; ids outside the vocabulary (padded embedding rows) decode to nothing."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in self._split_pieces:  # encoded apart from their neighbours; SentencePiece gives ""
                parts.append(self._sp.decode(run))
                parts.append("" if skip_special_tokens else self._split_pieces[i])
                run = []
            elif 0 <= i < self.vocab_size and not (skip_special_tokens and i in self.all_special_ids):
                run.append(i)
        parts.append(self._sp.decode(run))
        return "".join(parts)

    def token_to_id(self, token: str) -> int | None:
        token_id = self._sp.piece_to_id(token)
        return token_id if self._sp.id_to_piece(token_id) == token else None

    def _extra_special_ids(self) -> frozenset[int]:
        control = (i for i in range(self.vocab_size) if self._sp.is_control(i))
        return frozenset(control) | {i for i, e in self._added.items() if e.get("special", True)}

    def _save_model_files(self, directory: Path) -> None:
        (directory / MODEL_FILE).write_bytes(self._proto)

    def _config(self) -> dict[str, Any]:
        config = dict(self._config_in)
        config.update(tokenizer_class=SENTENCEPIECE_CLASS, model_file=MODEL_FILE)
        config["added_tokens_decoder"] = {
            str(i): {"content": self._sp.id_to_piece(i), "special": True}
            for i in sorted(self.all_special_ids)
        }
        config.update(super()._config())
        return config


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path,
    *,
    model_type: str = "bpe",
    special_tokens: SpecialTokens | None = None,
    user_symbols: Sequence[str] = LLADA_NAMED_SPECIAL_TOKENS,
    byte_fallback: bool = True,
    split_digits: bool = True,
    chat_template: str | None = LLADA_CHAT_TEMPLATE,
    num_threads: int = 1,
    **options: Any,
) -> SentencePieceTokenizer:
    """Train a lossless SentencePiece model on ``texts``; write ``tokenizer.model`` + sidecar to ``out_dir``.

    ``user_symbols`` (default: LLaDA's named special tokens) and the five ``special_tokens`` become
    user-defined symbols with the lowest ids after ``<unk>`` (0), so they are never split. ``vocab_size``
    is an upper bound (a small corpus may give fewer pieces). ``options`` go to SentencePieceTrainer.
    """
    import sentencepiece as spm

    special = special_tokens or SpecialTokens()
    symbols = list(
        dict.fromkeys([*user_symbols, *(getattr(special, n) for n in ("bos", "eos", "pad", "mask", "eot"))])
    )
    required = 1 + len(symbols) + (256 if byte_fallback else 0)
    if vocab_size <= required:
        raise ValueError(
            f"train_sentencepiece: vocab_size={vocab_size} leaves no room for learned pieces "
            f"(<unk> + {len(symbols)} symbols + {256 if byte_fallback else 0} byte pieces = {required})"
        )
    sentences = [t for t in texts if t]
    if not sentences:
        raise ValueError("train_sentencepiece: no (non-empty) training texts")
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        model_type=model_type,
        user_defined_symbols=symbols,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        byte_fallback=byte_fallback,
        split_digits=split_digits,
        character_coverage=1.0,
        hard_vocab_limit=False,
        max_sentence_length=1 << 20,
        num_threads=num_threads,
        minloglevel=2,
    )
    settings.update(options)
    proto = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=proto, **settings)
    except RuntimeError as err:
        raise ValueError(f"train_sentencepiece: SentencePiece training failed: {err}") from err
    config: dict[str, Any] = {"chat_template": chat_template} if chat_template else {}
    config.update(special.to_config())
    sp_proto = proto.getvalue()
    probe = spm.SentencePieceProcessor(model_proto=sp_proto)
    config["added_tokens_decoder"] = {
        str(probe.piece_to_id(s)): {"content": s, "special": True} for s in symbols
    }
    out = Path(out_dir)
    tokenizer = SentencePieceTokenizer(sp_proto, config, special, source=str(out / MODEL_FILE))
    tokenizer.save_pretrained(out)
    return tokenizer
