"""Where a LLaDA tensor lives in a Megatron ``torch_dist`` checkpoint: the HybridModel layout the model
writes, and the GPTModel layout that earlier builds (and Megatron-LM GPT checkpoints) wrote.

- ``hybrid`` (written now): one key per sublayer, ``decoder.layers.<k>.<name>`` with ``k = 2 * block``
  for the attention sublayer and ``2 * block + 1`` for the MLP sublayer; final norm
  ``decoder.final_norm.weight``.
- ``gpt`` (read): layers stacked on a leading axis of ``n_layers``, ``decoder.layers.<name>``; final norm
  ``decoder.final_layernorm.weight``.

Both use the Transformer-Engine names for the norms fused into the following linear. A GPT-layout
checkpoint loads into the HybridModel build by rewriting the model's sharded tensors (and the
optimizer's, whose keys embed the parameter's) to the GPT keys and offsets (`to_gpt_layout`): layer
``i`` -> sublayers ``2i`` and ``2i + 1``, ``final_layernorm`` -> ``final_norm``, as megatron-core 0.19
describes the GPTModel -> HybridModel move.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from megatron.core.dist_checkpointing import ShardedTensor
from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensorFactory

HYBRID, GPT = "hybrid", "gpt"
SUBLAYERS = ("attention", "mlp")  # the order of a block's sublayers in the pattern "*-"
HYBRID_FINAL_NORM = "decoder.final_norm."
GPT_FINAL_NORM = "decoder.final_layernorm."
_GPT_DROPS = "output_layer._extra_state"
_HYBRID_LAYER = re.compile(r"decoder\.layers\.(\d+)\.")


def sublayer_index(block: int, sublayer: str) -> int:
    """Index in the hybrid stack of ``sublayer`` ("attention" | "mlp") of LLaDA block ``block``."""
    return 2 * block + SUBLAYERS.index(sublayer)


def block_of(index: int) -> tuple[int, str]:
    """(block, sublayer) of hybrid-stack layer ``index`` (0-based, global)."""
    return index // 2, SUBLAYERS[index % 2]


def gpt_key(hybrid_key: str) -> tuple[str, int | None]:
    """The GPT-layout key of a hybrid-layout key, with the block (stacked-axis index) for layer tensors.

    Works on any key that embeds a model key (optimizer state keys are ``optimizer.state.<kind>.<key>``).
    """
    match = _HYBRID_LAYER.search(hybrid_key)
    if match is not None:
        block, _ = block_of(int(match.group(1)))
        return hybrid_key[: match.start()] + "decoder.layers." + hybrid_key[match.end() :], block
    return hybrid_key.replace(HYBRID_FINAL_NORM, GPT_FINAL_NORM), None


def detect_layout(keys: Iterable[str]) -> str:
    """``gpt`` when the checkpoint's tensor keys are GPTModel's (stacked layers), else ``hybrid``."""
    keys = list(keys)
    if any(k.startswith(GPT_FINAL_NORM) for k in keys):
        return GPT
    if any(k.startswith("decoder.layers.") and not _HYBRID_LAYER.match(k) for k in keys):
        return GPT
    return HYBRID


def to_gpt_layout(sharded_state: dict, n_layers: int) -> dict:
    """Rewrite, in place, every `ShardedTensor` (tensor factory: SwiGLU's fc1; object: extra state) of a
    HybridModel (or
    its optimizer) state dict to the key and global offsets it has in a GPT-layout checkpoint of
    ``n_layers`` blocks; returns the dict (or list)."""
    items = sharded_state.items() if isinstance(sharded_state, dict) else enumerate(sharded_state)
    for key, value in list(items):
        if isinstance(value, ShardedTensor):
            sharded_state[key] = _gpt_tensor(value, n_layers)
        elif isinstance(value, ShardedTensorFactory):
            sharded_state[key] = _gpt_factory(value, n_layers)
        elif isinstance(value, ShardedObject) and value.key.endswith(_GPT_DROPS):
            del sharded_state[key]  # GPTModel.sharded_state_dict drops it (always empty): not stored
        elif isinstance(value, ShardedObject):
            sharded_state[key] = _gpt_object(value, n_layers)
        elif isinstance(value, dict | list):
            to_gpt_layout(value, n_layers)
    return sharded_state


def _gpt_object(o: ShardedObject, n_layers: int) -> ShardedObject:
    """Per-layer objects (TE's ``_extra_state``): megatron shapes them (1,) at (0,) without a layer axis."""
    key, block = gpt_key(o.key)
    if block is None:
        return replace(o, key=key)
    shape, offset = (o.global_shape, o.global_offset) if o.global_shape != (1,) else ((), ())
    return replace(o, key=key, global_shape=(n_layers, *shape), global_offset=(block, *offset))


def _gpt_factory(f: ShardedTensorFactory, n_layers: int) -> ShardedTensorFactory:
    """The factory whose built tensors are those of ``f`` in the GPT layout."""
    build, hybrid_key = f.build_fn, f.key

    def build_fn(key, data, replica_id, flattened_range):
        return to_gpt_layout(build(hybrid_key, data, replica_id, flattened_range), n_layers)

    return replace(f, key=gpt_key(hybrid_key)[0], build_fn=build_fn)


def _gpt_tensor(t: ShardedTensor, n_layers: int) -> ShardedTensor:
    key, block = gpt_key(t.key)
    if block is None:
        return replace(t, key=key)
    return replace(
        t,
        key=key,
        global_shape=(n_layers, *t.global_shape),
        global_offset=(block, *t.global_offset),
        axis_fragmentations=(n_layers, *t.axis_fragmentations),
        prepend_axis_num=t.prepend_axis_num + 1,
    )


def tensor_keys(sharded_state: dict) -> list[str]:
    """Keys of the `ShardedTensor` entries of a sharded state dict."""
    return [v.key for v in nested_values(sharded_state) if isinstance(v, ShardedTensor)]
