"""Monte-Carlo ELBO terms of log pi(y | x) for masked diffusion LMs (spec §3.1, §5.5).

One item's term is  l = weight * sum_{i masked, counted} log p(y_i | y_t, x)  (<= 0), with the weight
1/p or L/l from :mod:`megatron_bgpo.diffusion.masking`; no length normalisation (BGPO Eq. 4). The
MC estimate of the ELBO of a response is the mean of its n_t terms.

Typical use (per micro-batch of items)::

    sample = sample_masks(counted_positions(resp, spec), seeds, j, n_t, spec)
    batch = build_masked_batch(prompt_ids, prompt_mask, prompt_pos, resp, sample, mask_id)
    logits = model(batch.tokens, batch.attention_mask, batch.position_ids)   # [N, T, V_local]
    logp = token_logprobs(logits, batch.targets, shard)   # vocab-parallel, [N, T] fp32
    terms = elbo_terms(logp, batch.loss_mask, batch.weight)                  # [N]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from megatron_bgpo.diffusion.masking import MaskSample

__all__ = ["MaskedBatch", "build_masked_batch", "elbo_terms", "mc_mean", "response_position_ids"]


@dataclass
class MaskedBatch:
    """Model inputs and loss bookkeeping for N items on canvases of length T = P + L.

    tokens: [N, T] int64, prompt + response with masked positions set to ``mask_id``.
    attention_mask: [N, T] bool key-padding mask (prompt padding and uncounted response tokens False).
    position_ids: [N, T] int64 (prompt positions as given, response continues from the last prompt token).
    targets: [N, T] int64 clean tokens (prompt + response).
    loss_mask: [N, T] bool, masked counted response positions (where the ELBO sums log-probs).
    weight: [N] fp32 ELBO weights.
    """

    tokens: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    targets: Tensor
    loss_mask: Tensor
    weight: Tensor


def response_position_ids(prompt_position_ids: Tensor, response_length: int) -> Tensor:
    """[N, P] left-padded prompt positions -> [N, L] positions of the response tokens."""
    last = prompt_position_ids[:, -1:]
    return last + 1 + torch.arange(response_length, device=last.device).unsqueeze(0)


def build_masked_batch(
    prompt_ids: Tensor,
    prompt_attention_mask: Tensor,
    prompt_position_ids: Tensor,
    response_ids: Tensor,
    sample: MaskSample,
    mask_id: int,
) -> MaskedBatch:
    """Masked canvases [prompt, y_t] for N items (prompts left-padded; row i pairs with item i)."""
    length = response_ids.shape[1]
    noisy = torch.where(sample.mask, torch.full_like(response_ids, mask_id), response_ids)
    zeros = torch.zeros_like(prompt_attention_mask, dtype=torch.bool)
    return MaskedBatch(
        tokens=torch.cat([prompt_ids, noisy], dim=1),
        attention_mask=torch.cat([prompt_attention_mask.to(torch.bool), sample.counted], dim=1),
        position_ids=torch.cat([prompt_position_ids, response_position_ids(prompt_position_ids, length)], 1),
        targets=torch.cat([prompt_ids, response_ids], dim=1),
        loss_mask=torch.cat([zeros, sample.mask], dim=1),
        weight=sample.weight,
    )


def elbo_terms(token_logprobs: Tensor, loss_mask: Tensor, weight: Tensor) -> Tensor:
    """Per-item ELBO terms: weight * sum over loss_mask of token log-probs.

    token_logprobs: [N, T] log p(target | canvas) (any float dtype; summed in fp32, values outside
    ``loss_mask`` are ignored even if non-finite); loss_mask: [N, T] bool; weight: [N] -> [N] fp32.
    """
    lp = torch.where(loss_mask, token_logprobs.float(), torch.zeros((), device=token_logprobs.device))
    return weight.float() * lp.sum(-1)


def mc_mean(terms: Tensor, response_index: Tensor, num_responses: int) -> Tensor:
    """Mean of the item terms of each response: [N], [N] -> [num_responses] (ELBO estimates)."""
    total = torch.zeros(num_responses, dtype=terms.dtype, device=terms.device).index_add_(
        0, response_index, terms
    )
    count = torch.zeros(num_responses, dtype=terms.dtype, device=terms.device).index_add_(
        0, response_index, torch.ones_like(terms)
    )
    return total / count.clamp(min=1)
