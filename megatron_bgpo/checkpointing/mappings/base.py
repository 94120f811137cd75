"""The machinery behind the per-architecture HF <-> Megatron tables (mappings/llada.py, illada.py, ...).

A table has one `TensorMapping` per Megatron tensor. Each entry names the Megatron parameter of the
HybridModel build (per-block tensors by their name inside the block's attention or MLP sublayer; local layer
spec, the Transformer-Engine spec differs only for the two norms fused into the following linear), the HF
tensor(s) it is made of (without the architecture's ``hf_prefix``), and how it splits over tensor
parallelism:

- ``replicated``: every TP rank holds the whole tensor (norm weights);
- ``vocab``: rows (dim 0, embedding rows) split evenly over TP ranks;
- ``row``: columns (dim 1) split evenly;
- ``qkv``: rows interleaved per query group [q heads of group g; k_g; v_g], groups split over TP;
- ``glu``: [gate; up] stacked *per TP rank* (rank r holds [gate_r; up_r]).

The logical (TP=1) Megatron tensor is what dist checkpointing stores, so these rules are also what
its resharding assumes. Everything is expressed through a ``read(hf_name, dim, start, stop)``
callback so a loader can read just the slice a rank owns (safetensors sliced reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from megatron_bgpo.checkpointing.layout import GPT, HYBRID, block_of, gpt_key, sublayer_index
from megatron_bgpo.models.llada.config import LLaDAConfig

# read(hf_name_without_prefix, dim, start, stop) -> tensor slice; dim None reads the whole tensor.
Reader = Callable[[str, int | None, int, int], torch.Tensor]


@dataclass(frozen=True)
class TensorMapping:
    """One Megatron tensor. ``megatron`` is its name in the model for whole-model tensors, or inside its
    sublayer (``sublayer`` "attention" | "mlp" of each LLaDA block) for per-block tensors."""

    megatron: str
    hf: tuple[str, ...]
    split: str
    sublayer: str | None = None
    te_megatron: str | None = None

    @property
    def per_layer(self) -> bool:
        return self.sublayer is not None

    def megatron_name(self, local_index: int | None = None, use_te: bool = False) -> str:
        """Parameter name in a model chunk; ``local_index`` = the sublayer's index in that chunk's stack."""
        name = self.te_megatron if (use_te and self.te_megatron) else self.megatron
        return f"decoder.layers.{local_index}.{name}" if self.per_layer else name

    def hf_names(self, layer: int | None = None) -> tuple[str, ...]:
        return tuple(n.format(layer=layer) for n in self.hf)

    def checkpoint_key(self, layer: int | None = None, layout: str = HYBRID) -> str:
        """Key of the logical tensor in a Megatron dist checkpoint of ``layout`` (checkpointing/layout.py):
        block ``layer``'s own key in the hybrid layout, the stacked key in the GPT layout. Norms are named
        as the Transformer-Engine spec does (the local spec maps its keys onto those)."""
        name = self.te_megatron or self.megatron
        key = f"decoder.layers.{sublayer_index(layer, self.sublayer)}.{name}" if self.per_layer else name
        return gpt_key(key)[0] if layout == GPT else key


def _even_range(total: int, rank: int, size: int, what: str) -> tuple[int, int]:
    if total % size != 0:
        raise ValueError(f"tensor parallel size {size} does not divide {what}={total}")
    part = total // size
    return rank * part, (rank + 1) * part


def read_local(
    m: TensorMapping, cfg: LLaDAConfig, layer: int | None, read: Reader, tp_rank: int = 0, tp_size: int = 1
) -> torch.Tensor:
    """The Megatron tensor of ``m`` held by TP rank ``tp_rank``, read slice by slice from HF tensors."""
    names = m.hf_names(layer)
    if m.split == "replicated":
        return read(names[0], None, 0, 0)
    if m.split == "vocab":
        a, b = _even_range(cfg.embedding_size, tp_rank, tp_size, "vocab rows")
        return read(names[0], 0, a, b)
    if m.split == "row":
        cols = cfg.n_heads * cfg.head_dim if "linear_proj" in m.megatron else cfg.mlp_hidden_size
        a, b = _even_range(cols, tp_rank, tp_size, "input features")
        return read(names[0], 1, a, b)
    if m.split == "glu":
        a, b = _even_range(cfg.mlp_hidden_size, tp_rank, tp_size, "mlp_hidden_size")
        return torch.cat([read(names[0], 0, a, b), read(names[1], 0, a, b)], dim=0)
    if m.split == "qkv":
        hd, per_group = cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
        g0, g1 = _even_range(cfg.n_kv_heads, tp_rank, tp_size, "n_kv_heads")
        q = read(names[0], 0, g0 * per_group * hd, g1 * per_group * hd)
        k = read(names[1], 0, g0 * hd, g1 * hd)
        v = read(names[2], 0, g0 * hd, g1 * hd)
        groups = g1 - g0
        q = q.reshape(groups, per_group * hd, -1)
        k = k.reshape(groups, hd, -1)
        v = v.reshape(groups, hd, -1)
        return torch.cat([q, k, v], dim=1).reshape(groups * (per_group + 2) * hd, -1)
    raise ValueError(f"unknown split kind {m.split!r} for {m.megatron}")


def to_hf(
    m: TensorMapping, cfg: LLaDAConfig, layer: int | None, logical: torch.Tensor
) -> dict[str, torch.Tensor]:
    """HF tensors (names without prefix) from the TP=1 (logical) Megatron tensor of ``m``."""
    names = m.hf_names(layer)
    if m.split in ("replicated", "vocab", "row"):
        return {names[0]: logical}
    if m.split == "glu":
        gate, up = logical.chunk(2, dim=0)
        return {names[0]: gate.contiguous(), names[1]: up.contiguous()}
    if m.split == "qkv":
        hd, per_group = cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
        grouped = logical.reshape(cfg.n_kv_heads, (per_group + 2) * hd, -1)
        q, k, v = grouped.split([per_group * hd, hd, hd], dim=1)
        width = logical.shape[-1]
        return {
            names[0]: q.reshape(-1, width).contiguous(),
            names[1]: k.reshape(-1, width).contiguous(),
            names[2]: v.reshape(-1, width).contiguous(),
        }
    raise ValueError(f"unknown split kind {m.split!r} for {m.megatron}")


def _arch(cfg: LLaDAConfig):
    from megatron_bgpo.checkpointing.mappings import architecture_of  # the registry imports this module

    return architecture_of(cfg)


def model_mappings(cfg: LLaDAConfig) -> tuple[TensorMapping, ...]:
    """The mappings of the logical tensors a model of ``cfg`` has (what a dist checkpoint stores and HF
    export writes): no separate output layer when embeddings are tied."""
    return tuple(
        m for m in _arch(cfg).tensors(cfg) if not (cfg.weight_tying and m.megatron == "output_layer.weight")
    )


def stage_mappings(cfg: LLaDAConfig) -> tuple[TensorMapping, ...]:
    """The mappings of the parameters a pipeline stage may hold. With tied embeddings under PP the last
    stage holds its own copy ``output_layer.weight`` of the embedding (kept equal by megatron's embedding
    group all-reduce); it is read from the one HF embedding tensor."""
    table = model_mappings(cfg)
    if not cfg.weight_tying:
        return table
    embedding = next(m for m in table if m.megatron == "embedding.word_embeddings.weight")
    return (*table, TensorMapping("output_layer.weight", embedding.hf, "vocab"))


def hf_prefix(cfg: LLaDAConfig) -> str:
    return _arch(cfg).hf_prefix


def hf_shapes(cfg: LLaDAConfig) -> dict[str, tuple[int, ...]]:
    """Full HF tensor name -> shape for a checkpoint of ``cfg`` (its architecture's table of shapes)."""
    return _arch(cfg).hf_shapes(cfg)


def layers_of(m: TensorMapping, cfg: LLaDAConfig) -> tuple[int | None, ...]:
    return tuple(range(cfg.n_layers)) if m.per_layer else (None,)


def hf_sources(cfg: LLaDAConfig) -> dict[str, tuple[TensorMapping, int | None]]:
    """Full HF tensor name -> (mapping, layer) that produces it (the inverse direction of the table)."""
    prefix = hf_prefix(cfg)
    return {
        prefix + name: (m, layer)
        for m in model_mappings(cfg)
        for layer in layers_of(m, cfg)
        for name in m.hf_names(layer)
    }


def logical_shape(m: TensorMapping, cfg: LLaDAConfig) -> tuple[int, ...]:
    """Shape of one layer's TP=1 Megatron tensor of ``m`` (computed on the meta device, no memory)."""
    shapes, prefix = hf_shapes(cfg), hf_prefix(cfg)

    def meta(name: str, dim: int | None, start: int, stop: int) -> torch.Tensor:
        t = torch.empty(shapes[prefix + name], device="meta")
        return t if dim is None else t.narrow(dim, start, stop - start)

    return tuple(read_local(m, cfg, 0 if m.per_layer else None, meta).shape)


def dict_reader(hf_weights: dict[str, torch.Tensor], prefix: str = "model.transformer.") -> Reader:
    """A Reader over an in-memory HF state dict (keys with or without ``prefix``, LLaDA's by default)."""
    table = {k.removeprefix(prefix): v for k, v in hf_weights.items()}

    def read(name: str, dim: int | None, start: int, stop: int) -> torch.Tensor:
        if name not in table:
            raise KeyError(f"HF tensor {prefix}{name} is missing")
        t = table[name]
        return t if dim is None else t.narrow(dim, start, stop - start)

    return read


def model_layer_map(model: torch.nn.Module) -> dict[int, tuple[int, str]]:
    """Local sublayer index -> (global block, sublayer) for one pipeline stage of the HybridModel."""
    decoder = getattr(model, "decoder", None)
    if decoder is None:
        return {}
    return {local: block_of(layer.layer_number - 1) for local, layer in enumerate(decoder.layers)}


def iter_stage_tensors(
    model: torch.nn.Module, table: tuple[TensorMapping, ...] | None = None
) -> Iterator[tuple[str, TensorMapping, int | None]]:
    """(local Megatron name, mapping, global block) for every tensor of ``table`` this stage holds;
    ``table`` defaults to LLaDA's (the Megatron names are the same for every dense architecture)."""
    if table is None:
        from megatron_bgpo.checkpointing.mappings.llada import MAPPINGS as table
    params = dict(model.named_parameters())
    layers = model_layer_map(model)
    for m in table:
        for use_te in (False, True):
            if use_te and m.te_megatron is None:
                continue
            if m.per_layer:
                for local, (block, sublayer) in layers.items():
                    name = m.megatron_name(local, use_te)
                    if sublayer == m.sublayer and name in params:
                        yield name, m, block
            elif m.megatron_name(None, use_te) in params:
                yield m.megatron_name(None, use_te), m, None


@torch.no_grad()
def load_hf_into_model(
    model: torch.nn.Module, cfg: LLaDAConfig, read: Reader, tp_rank: int, tp_size: int
) -> int:
    """Copy HF weights into one stage of a Megatron model of ``cfg``; returns the number of tensors set.

    Raises if a parameter of the model is not covered by the mapping or shapes disagree.
    """
    params = dict(model.named_parameters())
    done: set[str] = set()
    for name, m, layer in iter_stage_tensors(model, stage_mappings(cfg)):
        local = read_local(m, cfg, layer, read, tp_rank, tp_size)
        target = params[name]
        if tuple(local.shape) != tuple(target.shape):
            raise ValueError(
                f"shape mismatch for {name} (HF {m.hf_names(layer)}): HF gives {tuple(local.shape)}, "
                f"model expects {tuple(target.shape)} (tp_rank {tp_rank}/{tp_size})"
            )
        target.copy_(local.to(target.dtype))
        done.add(name)
    missing = sorted(set(params) - done)
    if missing:
        raise ValueError(f"model parameters not covered by the {cfg.family} mapping: {missing[:8]}")
    return len(done)
