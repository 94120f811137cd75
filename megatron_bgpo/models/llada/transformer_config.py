"""Map `LLaDAConfig` + `ParallelConfig` onto megatron-core's `TransformerConfig`.

Layout errors (TP not dividing heads or kv heads, PP not dividing layers, vocab not divisible by
TP) are raised here, once, naming the numbers involved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer import TransformerConfig

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.moe import moe_transformer_kwargs, validate_moe_layout
from megatron_bgpo.parallel.cpu_compat import cpu_mode
from megatron_bgpo.parallel.distributed import ParallelConfig


def validate_layout(cfg: LLaDAConfig, parallel: ParallelConfig) -> None:
    """Raise ValueError when ``parallel`` cannot shard ``cfg``."""
    tp, pp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size
    checks = [
        (cfg.n_heads, tp, "n_heads", "tensor_model_parallel_size"),
        (cfg.n_kv_heads, tp, "n_kv_heads", "tensor_model_parallel_size"),
        (cfg.mlp_hidden_size, tp, "mlp_hidden_size", "tensor_model_parallel_size"),
        (cfg.embedding_size, tp, "embedding_size (vocab rows)", "tensor_model_parallel_size"),
        (
            cfg.n_layers,
            pp * (parallel.virtual_pipeline_model_parallel_size or 1),
            "n_layers",
            "pipeline_model_parallel_size x virtual stages",
        ),
    ]
    for value, divisor, what, by in checks:
        if value % divisor != 0:
            raise ValueError(f"{by}={divisor} does not divide {what}={value}")
    validate_moe_layout(cfg, tp, parallel.expert_model_parallel_size)


def to_transformer_config(
    cfg: LLaDAConfig,
    parallel: ParallelConfig,
    params_dtype: torch.dtype = torch.float32,
    **overrides,
) -> TransformerConfig:
    """TransformerConfig for LLaDA (HybridModel): RMSNorm, SwiGLU, no biases, no dropout.

    Fusions that JIT-compile (bias-activation, RoPE, masked softmax) are off on CPU, where the first
    call would compile for ~20 s and gain nothing; on GPU they keep megatron-core's defaults.
    """
    validate_layout(cfg, parallel)
    on_cpu = cpu_mode()
    kwargs = dict(
        # HybridModel counts sublayers: one LLaDA block = attention + MLP layer. is_hybrid_model keeps
        # megatron's depth-scaled init of the output projections at std / sqrt(2 * n_layers) (as a GPT
        # build of n_layers blocks has it).
        num_layers=2 * cfg.n_layers,
        is_hybrid_model=True,
        hidden_size=cfg.d_model,
        num_attention_heads=cfg.n_heads,
        num_query_groups=cfg.n_kv_heads,
        kv_channels=cfg.head_dim,
        ffn_hidden_size=cfg.mlp_hidden_size,
        gated_linear_unit=True,
        activation_func=F.silu,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.rms_norm_eps,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        params_dtype=params_dtype,
        pipeline_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        # Variable sequence lengths in the pipeline schedule need the alltoall dispatcher setting
        # (a TransformerConfig validation quirk, MoE is not used).
        variable_seq_lengths=True,
        moe_token_dispatcher_type="alltoall",
        use_cpu_initialization=on_cpu,
        perform_initialization=True,
        init_method_std=0.02,
        # Every loss here is a sum with globally fixed weights (rl/update.py): the schedule must not
        # divide by the number of micro-batches nor DDP average over replicas (parallel/ddp.py).
        calculate_per_token_loss=True,
    )
    kwargs.update(
        moe_transformer_kwargs(cfg, parallel.expert_model_parallel_size, parallel.tensor_model_parallel_size)
    )
    if on_cpu:
        kwargs.update(
            bias_activation_fusion=False,
            bias_dropout_fusion=False,
            apply_rope_fusion=False,
            masked_softmax_fusion=False,
            gradient_accumulation_fusion=False,
            persist_layer_norm=False,
        )
    else:
        kwargs.update(bias_activation_fusion=True, apply_rope_fusion=False)
    kwargs.update(overrides)
    return TransformerConfig(**kwargs)
