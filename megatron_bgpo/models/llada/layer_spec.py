"""Transformer layer spec for LLaDA: megatron-core's GPT layer with bidirectional attention.

LLaDA is a masked-diffusion model: no causal mask. Attention uses `AttnMaskType.padding` so a
key-padding mask (left-padded prompts of different lengths) can be passed; with an all-False mask
it is plain full bidirectional attention. Transformer Engine layers are used when TE is importable
and CUDA is present; otherwise megatron-core's local (pure PyTorch) layers.
"""

from __future__ import annotations

from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.spec_utils import ModuleSpec

from megatron_bgpo.parallel import cpu_compat


def te_available() -> bool:
    """True when Transformer Engine can be used (importable and CUDA present)."""
    if cpu_compat.cpu_mode():
        return False
    try:
        from megatron.core.extensions.transformer_engine import HAVE_TE
    except ImportError:
        return False
    return bool(HAVE_TE)


def llada_layer_spec(use_te: bool | None = None) -> ModuleSpec:
    """Layer spec (TE when ``use_te`` or, if None, when available) with bidirectional attention."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_te is None:
        use_te = te_available()
    if use_te and not te_available():
        raise RuntimeError("use_te=True but Transformer Engine with CUDA is not available")
    if use_te:
        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.self_attention.params["attn_mask_type"] = AttnMaskType.padding
    return spec
