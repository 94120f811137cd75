"""Build LLaDA as a megatron-core `HybridModel` and run its bidirectional forward.

The model is megatron-core's HybridModel with the pattern ``"*-" * n_layers`` (attention and MLP
sublayer per LLaDA block; pipeline stages cut at block boundaries with ``|``), the project's
bidirectional stack spec (layer_spec.py), RoPE (rotate-half, theta from the config, full head dim),
untied output layer (tied when the config says so), an optional key-padding mask, and pre/post-process
set per pipeline stage. Logits come out vocab-parallel: [B, T, V / TP]. megatron-core 0.19 deprecates
GPTModel for HybridModel; checkpoints written by the earlier GPTModel build still load
(checkpointing/layout.py).
"""

from __future__ import annotations

import torch
from megatron.core.models.hybrid.hybrid_model import HybridModel
from megatron.core.transformer import TransformerConfig

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.layer_spec import llada_moe_stack_spec, llada_stack_spec
from megatron_bgpo.models.llada.moe import sum_reduced_aux_loss
from megatron_bgpo.models.llada.prefix_cache import check_supported, run_stage, unwrap_model
from megatron_bgpo.models.logprobs import chunked_token_logprobs
from megatron_bgpo.parallel.groups import current_groups


def hybrid_pattern(n_layers: int, stages: int = 1, moe_blocks: tuple[bool, ...] | None = None) -> str:
    """HybridModel layer pattern of ``n_layers`` LLaDA blocks cut into ``stages`` pipeline segments
    (pipeline x virtual stages; segment ``vp * pp + pp_rank`` is that chunk's), e.g. ``"*-*-|*-*-"``.
    ``moe_blocks`` (per block, LLaDA-MoE): True blocks get megatron's MoE sublayer ``E`` instead of ``-``."""
    if n_layers % stages != 0:
        raise ValueError(f"{stages} pipeline segments do not divide n_layers={n_layers}")
    moe_blocks = moe_blocks or (False,) * n_layers
    if len(moe_blocks) != n_layers:
        raise ValueError(f"moe_blocks has {len(moe_blocks)} entries for n_layers={n_layers}")
    blocks = ["*E" if moe else "*-" for moe in moe_blocks]
    per = n_layers // stages
    return "|".join("".join(blocks[s * per : (s + 1) * per]) for s in range(stages))


def build_llada_model(
    cfg: LLaDAConfig,
    transformer_config: TransformerConfig,
    pg_collection=None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    vp_stage: int | None = None,
    use_te: bool | None = None,
) -> HybridModel:
    """One pipeline stage (or virtual stage ``vp_stage``) of LLaDA on the current rank.

    ``pg_collection`` defaults to megatron's parallel-state groups; ``pre_process``/``post_process``
    default to whether this rank holds the first/last pipeline stage.
    """
    from megatron.core.pipeline_parallel.utils import (
        is_pp_first_stage,
        is_pp_last_stage,
        is_vp_first_stage,
        is_vp_last_stage,
    )

    if pg_collection is None:
        pg_collection = current_groups().pgs
    vpp = transformer_config.virtual_pipeline_model_parallel_size
    if pre_process is None:
        pre_process = is_pp_first_stage(pg_collection.pp) and is_vp_first_stage(vp_stage, vpp)
    if post_process is None:
        post_process = is_pp_last_stage(pg_collection.pp) and is_vp_last_stage(vp_stage, vpp)
    stages = transformer_config.pipeline_model_parallel_size * (vpp or 1)
    if cfg.is_moe or cfg.qk_layernorm:
        spec = llada_moe_stack_spec(max(cfg.num_experts, 1), cfg.qk_layernorm, use_te)
    else:
        spec = llada_stack_spec(use_te)
    model = HybridModel(
        config=transformer_config,
        hybrid_stack_spec=spec,
        hybrid_layer_pattern=hybrid_pattern(cfg.n_layers, stages, cfg.moe_blocks()),
        vocab_size=cfg.embedding_size,
        max_sequence_length=cfg.max_sequence_length,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=cfg.weight_tying,
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=int(cfg.rope_theta),
        pg_collection=pg_collection,
        vp_stage=vp_stage,
    )
    if cfg.is_moe:
        sum_reduced_aux_loss(model)
    return model


def real_tokens(attention_mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """[B, T] bool, True = real token (all True without a mask); checks the mask's shape."""
    if attention_mask is None:
        return torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)
    if attention_mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} != tokens {tuple(tokens.shape)}"
        )
    return attention_mask.bool()


def key_padding_mask(attention_mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """Megatron attention mask [B, 1, 1, T] (True = masked-out key) from [B, T] (True = real token)."""
    return ~real_tokens(attention_mask, tokens)[:, None, None, :]


def llada_forward(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    logits_range: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Forward one stage. tokens [B, T] long; attention_mask [B, T] bool (True = real) or None.

    Returns vocab-parallel logits [B, T, V/TP] on the last stage, hidden states on other stages.
    RoPE is relative, so left padding (a uniform position shift of the real tokens) leaves the
    attention scores unchanged; positions are 0..T-1 as in the HF model. With
    ``logits_range=(start, stop)`` the output layer runs only on those positions: [B, stop - start, V/TP]
    (the decoder still runs on all T positions).
    """
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)
    if logits_range is None:
        return model(tokens, positions, key_padding_mask(attention_mask, tokens))
    inner = unwrap_model(model)
    check_supported(inner, cached=False)
    return run_stage(inner, tokens, real_tokens(attention_mask, tokens), 0, logits_range)


def llada_selected_logprobs(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None,
    targets: torch.Tensor,
    positions: torch.Tensor,
    tp_group=None,
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """Forward one stage, with log-probs instead of logits on the last: log p(targets) [B, T] fp32 at
    ``positions`` [B, T] bool (zeros elsewhere); other stages return their hidden states.

    The output layer runs only on the selected positions' hidden states, ``chunk_rows`` at a time with
    recomputation in backward (`chunked_token_logprobs`): no [B, T, V/TP] logits are materialised.
    """
    inner = unwrap_model(model)
    check_supported(inner, cached=False)
    hidden = run_stage(inner, tokens, real_tokens(attention_mask, tokens), project=False)
    if not inner.post_process:
        return hidden
    weight = inner.shared_embedding_or_output_weight() if inner.share_embeddings_and_output_weights else None

    def head(rows: torch.Tensor) -> torch.Tensor:  # [n, H] -> [n, V/TP]
        return inner.output_layer(rows[:, None, :], weight=weight)[0][:, 0, :]

    selected = hidden.transpose(0, 1)[positions]  # [N, H]
    lp = chunked_token_logprobs(selected, targets[positions], head, tp_group, chunk_rows)
    out = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
    return out.masked_scatter(positions, lp)
