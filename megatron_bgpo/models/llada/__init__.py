"""LLaDA (masked-diffusion LLaMA-shaped transformer) on megatron-core."""

from megatron_bgpo.models.llada.config import PRESETS, LLaDAConfig, get_preset
from megatron_bgpo.models.llada.model import build_llada_model, key_padding_mask, llada_forward
from megatron_bgpo.models.llada.provider import build_model_chunks
from megatron_bgpo.models.llada.transformer_config import to_transformer_config, validate_layout

__all__ = [
    "PRESETS",
    "LLaDAConfig",
    "build_llada_model",
    "build_model_chunks",
    "get_preset",
    "key_padding_mask",
    "llada_forward",
    "to_transformer_config",
    "validate_layout",
]
