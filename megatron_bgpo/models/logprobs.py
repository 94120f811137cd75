"""Log-probabilities of target tokens from vocab-parallel logits, without gathering the vocabulary.

Every ELBO term and sampler step needs log p(y_i | context) at chosen positions. The logits of
LLaDA-8B are 126k wide; under tensor parallelism each rank holds V/TP columns. We select the
positions first (memory ~ selected tokens x V/TP), then use megatron-core's vocab-parallel cross
entropy (all-reduces of the max, the target logit and the partition function over the TP group).
"""

from __future__ import annotations

import torch
from megatron.core.tensor_parallel import vocab_parallel_cross_entropy


def token_logprobs(
    vocab_parallel_logits: torch.Tensor,
    targets: torch.Tensor,
    tp_group: torch.distributed.ProcessGroup | None = None,
) -> torch.Tensor:
    """log p(targets) in fp32. logits [..., V/TP] (this rank's shard), targets [...] global ids.

    The logits tensor is consumed (megatron subtracts the max in place when it is already fp32);
    pass a selection (see `selected_token_logprobs`) or a copy if you still need it.
    """
    if vocab_parallel_logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(vocab_parallel_logits.shape)} and targets {tuple(targets.shape)} disagree"
        )
    return -vocab_parallel_cross_entropy(vocab_parallel_logits, targets, tp_group=tp_group)


def selected_token_logprobs(
    vocab_parallel_logits: torch.Tensor,
    targets: torch.Tensor,
    positions: torch.Tensor,
    tp_group: torch.distributed.ProcessGroup | None = None,
) -> torch.Tensor:
    """log p(targets[positions]) for logits [B, T, V/TP], targets [B, T], positions [B, T] bool.

    Returns [B, T] fp32 with zeros where ``positions`` is False; only the selected rows of the logits
    enter the softmax (memory ~ selected tokens x V/TP, not B x T x V).
    """
    out = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
    if positions.any():
        rows = vocab_parallel_logits[positions]  # [N, V/TP], a new tensor
        out = out.masked_scatter(positions, token_logprobs(rows, targets[positions], tp_group))
    return out
