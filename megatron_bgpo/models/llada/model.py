"""Build LLaDA as a megatron-core `GPTModel` and run its bidirectional forward.

The model is megatron-core's GPT stack with: RoPE (rotate-half, theta from the config, full head
dim), untied output layer, bidirectional attention with an optional key-padding mask, and
pre/post-process set per pipeline stage. Logits come out vocab-parallel: [B, T, V / TP].
"""

from __future__ import annotations

import torch
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer import TransformerConfig

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.layer_spec import llada_layer_spec
from megatron_bgpo.models.llada.prefix_cache import check_range, check_supported, project_logits, unwrap_gpt
from megatron_bgpo.parallel.groups import current_groups


def build_llada_model(
    cfg: LLaDAConfig,
    transformer_config: TransformerConfig,
    pg_collection=None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    vp_stage: int | None = None,
    use_te: bool | None = None,
) -> GPTModel:
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
    model = GPTModel(
        config=transformer_config,
        transformer_layer_spec=llada_layer_spec(use_te),
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
    return model


def key_padding_mask(attention_mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """Megatron attention mask [B, 1, 1, T] (True = masked-out key) from [B, T] (True = real token)."""
    if attention_mask is None:
        return torch.zeros(tokens.shape[0], 1, 1, tokens.shape[1], dtype=torch.bool, device=tokens.device)
    if attention_mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} != tokens {tuple(tokens.shape)}"
        )
    return ~attention_mask.bool()[:, None, None, :]


def llada_forward(
    model: GPTModel,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    logits_range: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Forward one stage. tokens [B, T] long; attention_mask [B, T] bool (True = real) or None.

    Returns vocab-parallel logits [B, T, V/TP] on the last stage, hidden states on other stages.
    RoPE is relative, so left padding (a uniform position shift of the real tokens) leaves the
    attention scores unchanged; positions are 0..T-1 as in the HF model. With
    ``logits_range=(start, stop)`` the output layer runs only on those positions: [B, stop - start, V/TP]
    (through GPTModel's ``output_processor`` hook; the decoder still runs on all T positions).
    """
    positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)
    mask = key_padding_mask(attention_mask, tokens)
    if logits_range is None:
        return model(tokens, positions, mask)
    gpt = unwrap_gpt(model)
    check_supported(gpt, cached=False)
    check_range(logits_range, 0, tokens.shape[1])

    def head(*, hidden_states: torch.Tensor, scale_logits, **_) -> torch.Tensor:
        """GPTModel output hook: final-normed hidden [T, B, H] -> logits [B, stop - start, V/TP]."""
        return scale_logits(project_logits(gpt, hidden_states, *logits_range))

    return model(tokens, positions, mask, output_processor=head)
