"""Layer specs for LLaDA: megatron-core's layers with bidirectional attention, as a HybridModel stack.

LLaDA is a masked-diffusion model: no causal mask. Attention uses `AttnMaskType.padding` so a
key-padding mask (left-padded prompts of different lengths) can be passed; with an all-False mask
it is plain full bidirectional attention. The core-attention kernel (TE or local) is wrapped by
`padding.right_padded`, so it only ever sees right-padded rows (what TE's fused attention assumes).
Transformer Engine layers are used when TE is importable and CUDA is present; otherwise
megatron-core's local (pure PyTorch) layers.

The model is a megatron-core `HybridModel` with the pattern ``"*-" * n_layers``: one LLaDA block is an
attention layer (``*``: input RMSNorm, attention, residual) followed by an MLP layer (``-``: pre-MLP
RMSNorm, SwiGLU, residual). Both sublayers are cut from megatron's GPT layer spec (the same modules,
the same parameter names and checkpoint key maps), so a block computes exactly what a GPT layer does.
megatron-core's stock hybrid spec is causal and always builds a TE final norm
(``hybrid_block.py``: ``TENorm``, which raises without TE); `BidirectionalHybridStack` builds the final
norm from this spec instead.
"""

from __future__ import annotations

import functools

from megatron.core.models.hybrid.hybrid_block import HybridStack, HybridStackSubmodules
from megatron.core.ssm.mlp_layer import MLPLayer
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.moe.moe_layer import MoELayer
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.transformer.transformer_layer import (
    MoETransformerLayer,
    TransformerLayer,
    TransformerLayerSubmodules,
)

from megatron_bgpo.models.llada.moe_sequence_parallel import SequenceParallelMoELayer
from megatron_bgpo.models.llada.padding import right_padded
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


def _resolve_te(use_te: bool | None) -> bool:
    if use_te is None:
        return te_available()
    if use_te and not te_available():
        raise RuntimeError("use_te=True but Transformer Engine with CUDA is not available")
    return use_te


def llada_layer_spec(use_te: bool | None = None) -> ModuleSpec:
    """One whole LLaDA block as a GPT `TransformerLayer` spec (TE when ``use_te`` or, if None, when
    available) with bidirectional attention: the source of the hybrid sublayers below."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if _resolve_te(use_te):
        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    attention = spec.submodules.self_attention
    attention.params["attn_mask_type"] = AttnMaskType.padding
    attention.submodules.core_attention = right_padded(attention.submodules.core_attention)
    return spec


class BidirectionalHybridStack(HybridStack):
    """megatron-core's `HybridStack` with the final norm taken from the spec (``final_norm``: a norm class
    built as ``final_norm(config=, hidden_size=, eps=)``), so the stack also runs without TE."""

    def __init__(
        self,
        config: TransformerConfig,
        submodules: HybridStackSubmodules,
        *,
        final_norm: type,
        post_process: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(config, submodules, post_process=post_process, post_layer_norm=False, **kwargs)
        self.post_layer_norm = post_process  # HybridStack.forward applies self.final_norm when set
        if post_process:
            self.final_norm = build_module(
                final_norm, config=config, hidden_size=config.hidden_size, eps=config.layernorm_epsilon
            )


def llada_stack_spec(use_te: bool | None = None) -> ModuleSpec:
    """The HybridModel stack spec: ``*`` = attention sublayer, ``-`` = MLP sublayer of a LLaDA block."""
    use_te = _resolve_te(use_te)
    block = llada_layer_spec(use_te).submodules
    keys = block.sharded_state_dict_keys_map  # local-spec norms stored under the TE names
    attention = TransformerLayerSubmodules(
        input_layernorm=block.input_layernorm,
        self_attention=block.self_attention,
        self_attn_bda=block.self_attn_bda,
        sharded_state_dict_keys_map=keys,
    )
    mlp = TransformerLayerSubmodules(
        pre_mlp_layernorm=block.pre_mlp_layernorm,
        mlp=block.mlp,
        mlp_bda=block.mlp_bda,
        sharded_state_dict_keys_map=keys,
    )
    if use_te:
        from megatron.core.extensions.transformer_engine import TENorm

        final_norm = TENorm
    else:
        final_norm = block.input_layernorm  # the local spec's RMSNorm class (the GPT block's final norm)
    return ModuleSpec(
        module=BidirectionalHybridStack,
        submodules=HybridStackSubmodules(
            attention_layer=ModuleSpec(module=TransformerLayer, submodules=attention),
            mlp_layer=ModuleSpec(module=MLPLayer, submodules=mlp),
        ),
        params={"final_norm": final_norm},
    )


def llada_moe_layer_spec(num_experts: int, qk_layernorm: bool, use_te: bool | None = None) -> ModuleSpec:
    """A whole LLaDA-MoE block as a GPT `TransformerLayer` spec: megatron's MoE layer (router, experts,
    optional shared expert; the local spec's `SequentialMLP` experts, TE's grouped ones with TE) as the
    MLP, RMSNorm QK-norm when ``qk_layernorm``, bidirectional attention."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if _resolve_te(use_te):
        spec = get_gpt_layer_with_transformer_engine_spec(
            num_experts=num_experts, moe_grouped_gemm=True, qk_layernorm=qk_layernorm
        )
    else:
        spec = get_gpt_layer_local_spec(
            num_experts=num_experts,
            moe_grouped_gemm=False,
            qk_layernorm=qk_layernorm,
            normalization="RMSNorm",
        )
    spec.submodules.self_attention.params["attn_mask_type"] = AttnMaskType.padding
    return spec


def llada_moe_stack_spec(num_experts: int, qk_layernorm: bool, use_te: bool | None = None) -> ModuleSpec:
    """HybridModel stack spec of LLaDA-MoE: ``*`` attention (QK-norm when ``qk_layernorm``), ``-`` dense
    SwiGLU MLP (the dense blocks of ``moe_layer_freq``), ``E`` megatron's MoE layer as a
    `MoETransformerLayer` (pre-MLP RMSNorm, MoE, residual); the MoE layer runs sequence-parallel
    internally at TP > 1 (`SequenceParallelMoELayer`)."""
    use_te = _resolve_te(use_te)
    spec = llada_stack_spec(use_te)
    moe_block = llada_moe_layer_spec(num_experts, qk_layernorm, use_te).submodules
    moe = moe_block.mlp  # megatron's spec: functools.partial(MoELayer, submodules=...)
    if not (isinstance(moe, functools.partial) and moe.func is MoELayer):
        raise TypeError(f"unexpected MoE layer spec from megatron-core: {moe!r}")
    # = MoELayer at TP 1; at TP > 1 it runs sequence-parallel inside, so MoE trains (its docstring)
    moe_block.mlp = functools.partial(SequenceParallelMoELayer, *moe.args, **moe.keywords)
    stack = spec.submodules
    stack.attention_layer.submodules.self_attention = moe_block.self_attention
    stack.moe_layer = ModuleSpec(
        module=MoETransformerLayer,
        submodules=TransformerLayerSubmodules(
            pre_mlp_layernorm=moe_block.pre_mlp_layernorm,
            mlp=moe_block.mlp,
            mlp_bda=moe_block.mlp_bda,  # the MoE layer's norm is not fused (TE or local): no key map
        ),
    )
    return spec
