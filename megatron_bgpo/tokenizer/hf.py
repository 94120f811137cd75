"""HF fast-tokenizer backend: ``tokenizer.json`` + ``tokenizer_config.json`` read by ``tokenizers``.

``transformers`` is not needed. Special tokens come from the config's ``added_tokens_decoder``
(tokens it lists that ``tokenizer.json`` lacks are added when their id is the next free one, as
``transformers`` does; any other disagreement is an error). The jinja ``chat_template`` of the config
(or a ``chat_template.jinja`` file beside it) is used for chat rendering.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from megatron_bgpo.tokenizer.base import (
    CONFIG_FILE,
    EncodedBatch,
    SpecialTokens,
    Tokenizer,
    pad_batch,
    read_config,
)

TOKENIZER_FILE = "tokenizer.json"
_COPIED_FILES = ("special_tokens_map.json",)


def added_tokens_from_config(config: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """``added_tokens_decoder`` of an HF config as ``{id: {"content": str, "special": bool, ...}}``."""
    entries = config.get("added_tokens_decoder") or {}
    if not isinstance(entries, dict):
        raise ValueError("added_tokens_decoder must be a mapping of id -> token")
    added: dict[int, dict[str, Any]] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise ValueError(f"added_tokens_decoder[{key!r}] needs a string 'content', got {entry!r}")
        try:
            added[int(key)] = entry
        except ValueError as err:
            raise ValueError(f"added_tokens_decoder key {key!r} is not an integer id") from err
    return dict(sorted(added.items()))


def chat_template_from_config(config: dict[str, Any]) -> str | None:
    """The config's ``chat_template`` (a string, or the ``default`` entry of a list of named templates)."""
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"chat_template must be a string, got {type(template).__name__}")
    return template or None


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` with an HF-style config (may be empty)."""

    def __init__(
        self,
        tokenizer_file: str | Path,
        config: dict[str, Any] | None = None,
        special_tokens: SpecialTokens | None = None,
        chat_template: str | None = None,
        copy_files: Sequence[Path] = (),
    ) -> None:
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as FastTokenizer

        source = str(tokenizer_file)
        try:
            self._tok = FastTokenizer.from_file(source)
        except Exception as err:  # tokenizers raises a bare Exception on malformed files
            raise ValueError(f"{source}: not a valid tokenizers tokenizer.json: {err}") from err
        self._tok.no_padding()
        self._tok.no_truncation()
        self._config_in: dict[str, Any] = dict(config or {})
        self._copy_files = list(copy_files)
        try:
            added = added_tokens_from_config(self._config_in)
            template = chat_template or chat_template_from_config(self._config_in)
        except ValueError as err:
            raise ValueError(f"tokenizer config for {source}: {err}") from err
        for token_id, entry in added.items():
            have = self._tok.token_to_id(entry["content"])
            if have is None and token_id == self._tok.get_vocab_size(with_added_tokens=True):
                flags = {
                    k: bool(entry.get(k, False)) for k in ("lstrip", "rstrip", "single_word", "normalized")
                }
                token = AddedToken(entry["content"], special=bool(entry.get("special", True)), **flags)
                if token.special:
                    self._tok.add_special_tokens([token])
                else:
                    self._tok.add_tokens([token])
                have = self._tok.token_to_id(entry["content"])
            if have != token_id:
                raise ValueError(
                    f"{source}: added token {entry['content']!r} has id {have} in tokenizer.json "
                    f"but {token_id} in tokenizer_config.json"
                )
        self.vocab_size = max(self._tok.get_vocab(with_added_tokens=True).values()) + 1
        super().__init__(special_tokens or SpecialTokens.from_config(self._config_in), template, source)

    @classmethod
    def from_dir(cls, directory: str | Path, special_tokens: SpecialTokens | None = None) -> HFTokenizer:
        """Load ``directory/tokenizer.json`` (+ ``tokenizer_config.json``, ``chat_template.jinja``)."""
        directory = Path(directory)
        config_file = directory / CONFIG_FILE
        config = read_config(config_file) if config_file.is_file() else {}
        template_file = directory / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        copies = [directory / name for name in _COPIED_FILES if (directory / name).is_file()]
        return cls(directory / TOKENIZER_FILE, config, special_tokens, template, copies)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_encode(
        self, texts: Sequence[str], pad_left: bool = True, pad_to: int | None = None
    ) -> EncodedBatch:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return pad_batch([e.ids for e in encodings], self.pad_id, pad_left=pad_left, pad_to=pad_to)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def _extra_special_ids(self) -> frozenset[int]:
        return frozenset(i for i, t in self._tok.get_added_tokens_decoder().items() if t.special)

    def _save_model_files(self, directory: Path) -> None:
        self._tok.save(str(directory / TOKENIZER_FILE))
        for path in self._copy_files:
            if path.resolve() != (directory / path.name).resolve():
                shutil.copyfile(path, directory / path.name)

    def _config(self) -> dict[str, Any]:
        config = dict(self._config_in)
        config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        config.setdefault("add_bos_token", False)
        config.setdefault("add_eos_token", False)
        if "added_tokens_decoder" not in config:
            config["added_tokens_decoder"] = {
                str(i): {"content": t.content, "special": t.special}
                for i, t in sorted(self._tok.get_added_tokens_decoder().items())
            }
        config.update(super()._config())
        return config
