"""Registry of the HF architectures the converter and model builder know, keyed by HF ``config.json``.

Each architecture is one short declarative file in this package (Megatron-Bridge style): its HF tensor
table (`TensorMapping`s, a function of the config so e.g. an MoE entry can list per-expert tensors), the
shapes of its HF tensors, how its ``config.json`` becomes the one typed `LLaDAConfig` the model builder
uses (``parse_config``) and back (``to_hf_config``). `architecture_for` picks the entry from the config's
``architectures`` list first, then its ``model_type``; `architecture_of` finds it again from
``LLaDAConfig.family``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_bgpo.checkpointing.mappings.base import TensorMapping
from megatron_bgpo.models.llada.config import LLaDAConfig

# Parses an HF config dict; the second argument maps tokenizer token strings to ids (special tokens an
# architecture's config.json may not state, e.g. iLLaDA's mask token), empty when no tokenizer is at hand.
ConfigParser = Callable[[dict[str, Any], Mapping[str, int], str], LLaDAConfig]


@dataclass(frozen=True)
class Architecture:
    """One HF architecture family.

    name: ``LLaDAConfig.family`` of its configs. hf_architectures / model_types: the HF ``config.json``
    keys that select it. hf_prefix: common prefix of its HF tensor names (the table's names omit it).
    tensors(cfg): its TensorMappings (before dropping a tied output layer). hf_shapes(cfg): full HF name ->
    shape. type_order: HF names without prefix (``{i}`` = block) in the order shards are written.
    embedding / output: HF names (without prefix) of the embedding and of the untied output layer.
    special_tokens: token strings whose ids ``parse_config`` may take from the tokenizer files (read only
    when non-empty).
    """

    name: str
    hf_architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    hf_prefix: str
    tensors: Callable[[LLaDAConfig], tuple[TensorMapping, ...]]
    hf_shapes: Callable[[LLaDAConfig], dict[str, tuple[int, ...]]]
    parse_config: ConfigParser
    to_hf_config: Callable[[LLaDAConfig], dict[str, Any]]
    type_order: tuple[str, ...]
    embedding: str
    output: str
    special_tokens: tuple[str, ...] = ()

    def describe(self) -> str:
        return (
            f"{self.name} (architectures {list(self.hf_architectures)}, model_type {list(self.model_types)})"
        )


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add ``arch``; its name and HF keys must not collide with a registered one."""
    for other in _REGISTRY.values():
        clash = (set(arch.hf_architectures) & set(other.hf_architectures)) or (
            set(arch.model_types) & set(other.model_types)
        )
        if other.name == arch.name or clash:
            raise ValueError(f"architecture {arch.describe()} collides with {other.describe()}")
    _REGISTRY[arch.name] = arch
    return arch


def known_architectures() -> list[Architecture]:
    return list(_REGISTRY.values())


def _known() -> str:
    return "; ".join(a.describe() for a in _REGISTRY.values())


def architecture_for(hf_config: dict[str, Any], source: str = "config") -> Architecture:
    """The entry for an HF config dict: by ``architectures`` when the config names any, else by
    ``model_type`` (a config with neither is LLaDA's, whose released configs always name themselves).
    Named architectures decide alone: families share model types (LLaDA-MoE's config.json is reported
    to say model_type "llada"), so an unknown architecture must not fall back to a model_type match.
    Unknown -> ValueError listing the known ones."""
    if not isinstance(hf_config, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(hf_config).__name__}")
    names = hf_config.get("architectures") or []
    for arch in _REGISTRY.values():
        if any(n in arch.hf_architectures for n in names):
            return arch
    model_type = hf_config.get("model_type")
    for arch in _REGISTRY.values():
        if model_type in arch.model_types and not names:
            return arch
    if model_type is None and not names:
        return _REGISTRY["llada"]
    raise ValueError(
        f"{source}: unknown architecture model_type={model_type!r} architectures={names}; "
        f"known architectures: {_known()}"
    )


def architecture_of(cfg: LLaDAConfig) -> Architecture:
    """The entry a parsed config came from (``cfg.family``)."""
    if cfg.family not in _REGISTRY:
        raise ValueError(f"unknown architecture family {cfg.family!r}; known architectures: {_known()}")
    return _REGISTRY[cfg.family]


def special_token_ids(folder: str | Path) -> dict[str, int]:
    """Token string -> id of the added/special tokens in a folder's ``tokenizer.json`` (``added_tokens``)
    and ``tokenizer_config.json`` (``added_tokens_decoder``); also looks in ``folder/tokenizer/`` (the
    tokenizer files of a Megatron checkpoint). Empty when there are none."""
    tokens: dict[str, int] = {}
    for base in (Path(folder), Path(folder) / "tokenizer"):
        for name, key in (
            ("tokenizer_config.json", "added_tokens_decoder"),
            ("tokenizer.json", "added_tokens"),
        ):
            path = base / name
            if not path.is_file():
                continue
            try:
                entries = json.loads(path.read_text(encoding="utf-8")).get(key) or {}
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                raise ValueError(f"{path}: unreadable tokenizer file ({exc})") from exc
            if isinstance(entries, dict):  # {"5": {"content": "<[MASK]>", ...}}
                tokens.update({e["content"]: int(i) for i, e in entries.items() if "content" in e})
            else:  # [{"id": 5, "content": "<[MASK]>", ...}]
                tokens.update({e["content"]: int(e["id"]) for e in entries if "content" in e and "id" in e})
    return tokens


def parse_hf_config(
    hf_config: dict[str, Any], tokens: Mapping[str, int] | None = None, source: str = "config"
) -> LLaDAConfig:
    """`LLaDAConfig` of an HF config dict through its architecture's parser."""
    return architecture_for(hf_config, source).parse_config(hf_config, tokens or {}, source)


def parse_config_in(hf_config: dict[str, Any], folder: str | Path, source: str = "config") -> LLaDAConfig:
    """`parse_hf_config` with the special tokens its architecture needs read from ``folder``'s tokenizer."""
    arch = architecture_for(hf_config, source)
    tokens = special_token_ids(folder) if arch.special_tokens else {}
    return arch.parse_config(hf_config, tokens, source)


def hf_config_of(cfg: LLaDAConfig) -> dict[str, Any]:
    """The HF ``config.json`` content of ``cfg`` in its architecture's own format."""
    return architecture_of(cfg).to_hf_config(cfg)


def load_config(path: str | Path) -> LLaDAConfig:
    """Read ``config.json`` (or a folder holding one) of any registered architecture; special tokens the
    config does not state come from the tokenizer files beside it."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"LLaDA config not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: malformed JSON ({exc})") from exc
    return parse_config_in(data, path.parent, str(path))


# The entries (one import each; the order only matters for the error message).
from megatron_bgpo.checkpointing.mappings import illada as _illada  # noqa: E402,F401
from megatron_bgpo.checkpointing.mappings import llada as _llada  # noqa: E402,F401
