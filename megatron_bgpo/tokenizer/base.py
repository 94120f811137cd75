"""The tokenizer interface every part of megatron-bgpo uses: text <-> ids, special ids, chat, batches.

Backends (``hf.HFTokenizer``, ``spm.SentencePieceTokenizer``) implement four primitives
(``encode``, ``decode``, ``token_to_id``, ``_save_model_files``) and set ``vocab_size``; everything
else (special ids, chat rendering, left-padded batches, vocab checks, the config sidecar) lives here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from megatron_bgpo.tokenizer.chat import Messages, render_chat, render_chat_template
from megatron_bgpo.tokenizer.constants import (
    LLADA_BOS_TOKEN,
    LLADA_EOS_TOKEN,
    LLADA_EOT_TOKEN,
    LLADA_MASK_TOKEN,
    LLADA_PAD_TOKEN,
)

CONFIG_FILE = "tokenizer_config.json"


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a JSON object (e.g. ``tokenizer_config.json``); ValueError naming the file if malformed."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: malformed JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


@dataclass(frozen=True)
class SpecialTokens:
    """Strings of the special tokens the diffusion and RL code needs (defaults: LLaDA's, spec §1.5)."""

    bos: str = LLADA_BOS_TOKEN
    eos: str = LLADA_EOS_TOKEN
    pad: str = LLADA_PAD_TOKEN
    mask: str = LLADA_MASK_TOKEN
    eot: str = LLADA_EOT_TOKEN

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpecialTokens:
        """Read ``bos_token``/``eos_token``/``pad_token``/``mask_token``/``eot_token`` (str or
        ``{"content": ...}``) from an HF-style ``tokenizer_config.json`` dict; missing ones keep LLaDA's."""
        default = cls()
        values: dict[str, str] = {}
        for name in ("bos", "eos", "pad", "mask", "eot"):
            value = config.get(f"{name}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}_token must be a string or {{'content': str}}, got {value!r}")
            values[name] = value if value else getattr(default, name)
        if not config.get("pad_token") and config.get("eos_token"):
            values["pad"] = values["eos"]  # LLaDA convention: PAD = EOS
        return cls(**values)

    def to_config(self) -> dict[str, str]:
        """The ``*_token`` entries of a ``tokenizer_config.json``."""
        return {f"{name}_token": getattr(self, name) for name in ("bos", "eos", "pad", "mask", "eot")}


@dataclass
class EncodedBatch:
    """A padded batch for the diffusion sampler and trainer.

    input_ids: [B, T] long, padded with the tokenizer's pad id.
    attention_mask: [B, T] bool, True on real tokens.
    position_ids: [B, T] long, 0 at each row's first real token and increasing; 0 on padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    lengths: list[int] = field(default_factory=list)  # real tokens per row

    def to(self, device: torch.device | str) -> EncodedBatch:
        """Copy the tensors to ``device``."""
        return EncodedBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            list(self.lengths),
        )


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, pad_left: bool = True, pad_to: int | None = None
) -> EncodedBatch:
    """Pad id lists to one length (the longest, or ``pad_to`` if larger) -> ``EncodedBatch`` of [B, T]."""
    if not sequences:
        raise ValueError("pad_batch: no sequences")
    lengths = [len(s) for s in sequences]
    width = max(lengths)
    if pad_to is not None:
        if pad_to < width:
            raise ValueError(f"pad_batch: pad_to={pad_to} is shorter than the longest sequence ({width})")
        width = pad_to
    batch = len(sequences)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.bool)
    position_ids = torch.zeros((batch, width), dtype=torch.long)
    for row, (ids, n) in enumerate(zip(sequences, lengths, strict=True)):
        if n == 0:
            continue
        start = width - n if pad_left else 0
        input_ids[row, start : start + n] = torch.as_tensor(list(ids), dtype=torch.long)
        attention_mask[row, start : start + n] = True
        position_ids[row, start : start + n] = torch.arange(n, dtype=torch.long)
    return EncodedBatch(input_ids, attention_mask, position_ids, lengths)


class Tokenizer(ABC):
    """Text <-> ids with the special ids the diffusion code needs.

    Attributes set at construction: ``vocab_size`` (number of ids = max id + 1, i.e. the fewest
    embedding rows a model needs), ``special_tokens`` (strings), ``bos_id``, ``eos_id``, ``pad_id``,
    ``mask_id``, ``eot_id``, ``all_special_ids`` and ``chat_template`` (jinja string or None).
    """

    vocab_size: int

    def __init__(self, special_tokens: SpecialTokens, chat_template: str | None, source: str) -> None:
        self.special_tokens = special_tokens
        self.chat_template = chat_template
        self.source = source
        ids: dict[str, int] = {}
        missing: list[str] = []
        for name in ("bos", "eos", "pad", "mask", "eot"):
            token = getattr(special_tokens, name)
            token_id = self.token_to_id(token)
            if token_id is None:
                missing.append(f"{name}={token!r}")
            else:
                ids[name] = token_id
        if missing:
            raise ValueError(
                f"tokenizer {source}: special tokens not in the vocabulary: {', '.join(missing)}"
            )
        self.bos_id: int = ids["bos"]
        self.eos_id: int = ids["eos"]
        self.pad_id: int = ids["pad"]
        self.mask_id: int = ids["mask"]
        self.eot_id: int = ids["eot"]
        if self.pad_id == self.mask_id:
            raise ValueError(f"tokenizer {source}: pad and mask tokens share id {self.pad_id}")
        self.all_special_ids: frozenset[int] = frozenset(ids.values()) | self._extra_special_ids()

    # ---- backend primitives -------------------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; no BOS/EOS added; special-token strings map to their single ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (a list or 1-D tensor); ``skip_special_tokens`` drops special tokens."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """Id of one vocabulary entry (e.g. a special token), or None if it is not one."""

    @abstractmethod
    def _save_model_files(self, directory: Path) -> None:
        """Write the backend's model file(s) into ``directory``."""

    def _extra_special_ids(self) -> frozenset[int]:
        """Further ids the backend treats as special (added/control tokens)."""
        return frozenset()

    def _config(self) -> dict[str, Any]:
        """The ``tokenizer_config.json`` written by ``save_pretrained``."""
        config: dict[str, Any] = dict(self.special_tokens.to_config())
        if self.chat_template:
            config["chat_template"] = self.chat_template
        return config

    # ---- shared behaviour ---------------------------------------------------------------------------
    @property
    def bos_token(self) -> str:
        return self.special_tokens.bos

    @property
    def eos_token(self) -> str:
        return self.special_tokens.eos

    def apply_chat_template(self, messages: Messages, prefill: str = "") -> str:
        """Prompt text of a conversation ending with the assistant header, plus ``prefill``.

        Uses the checkpoint's jinja ``chat_template`` when there is one, else the built-in LLaDA renderer.
        """
        if self.chat_template:
            return render_chat_template(
                self.chat_template,
                messages,
                bos_token=self.special_tokens.bos,
                eos_token=self.special_tokens.eos,
                pad_token=self.special_tokens.pad,
                mask_token=self.special_tokens.mask,
                prefill=prefill,
            )
        return render_chat(messages, bos_token=self.special_tokens.bos, prefill=prefill)

    def batch_encode(
        self, texts: Sequence[str], pad_left: bool = True, pad_to: int | None = None
    ) -> EncodedBatch:
        """Encode texts and pad them (left by default, as the sampler wants) -> [B, T] tensors."""
        return pad_batch([self.encode(t) for t in texts], self.pad_id, pad_left=pad_left, pad_to=pad_to)

    def batch_decode(
        self, ids: torch.Tensor | Sequence[Sequence[int]], skip_special_tokens: bool = False
    ) -> list[str]:
        """Decode each row of ``ids`` ([B, T] tensor or list of lists)."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in ids]

    def padded_vocab_size(self, multiple: int = 128) -> int:
        """``vocab_size`` rounded up to a multiple (LLaDA: 126349 -> 126464 with 128)."""
        return -(-self.vocab_size // multiple) * multiple

    def check_model_vocab(self, model_vocab_size: int) -> None:
        """Raise ValueError unless a model with ``model_vocab_size`` embedding rows can embed every id."""
        if model_vocab_size < self.vocab_size:
            raise ValueError(
                f"model vocab size {model_vocab_size} is smaller than the tokenizer's {self.vocab_size} ids "
                f"({self.source}); the model needs at least {self.vocab_size} embedding rows "
                f"(e.g. padded_vocab_size() = {self.padded_vocab_size()})"
            )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the model file(s) and ``tokenizer_config.json`` into ``directory``; return it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self._save_model_files(out)
        (out / CONFIG_FILE).write_text(json.dumps(self._config(), indent=2, ensure_ascii=False) + "\n")
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, vocab_size={self.vocab_size}, bos={self.bos_id}, "
            f"eos={self.eos_id}, pad={self.pad_id}, mask={self.mask_id}, eot={self.eot_id})"
        )
