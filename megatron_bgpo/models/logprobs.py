"""Log-probabilities of target tokens from vocab-parallel logits, without gathering the vocabulary.

Every ELBO term and sampler step needs log p(y_i | context) at chosen positions. The logits of
LLaDA-8B are 126k wide; under tensor parallelism each rank holds V/TP columns. We select the
positions first (memory ~ selected tokens x V/TP), then use megatron-core's vocab-parallel cross
entropy (all-reduces of the max, the target logit and the partition function over the TP group), in
fp32 whatever the parameter dtype. The policy update goes further (`chunked_token_logprobs`): the
output layer runs only on the selected positions' hidden states, a chunk of rows at a time with
recomputation in backward, so no [B, T, V] (or even [N, V]) logits tensor is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from megatron.core.tensor_parallel import vocab_parallel_cross_entropy
from torch.utils.checkpoint import checkpoint


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
    return -vocab_parallel_cross_entropy(vocab_parallel_logits.float(), targets, tp_group=tp_group)


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


def chunked_token_logprobs(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    tp_group: torch.distributed.ProcessGroup | None = None,
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """log p(targets) [N] fp32 from final-normed hidden states [N, H] through the output layer ``head``
    ([n, H] -> vocab-parallel logits [n, V/TP]), ``chunk_rows`` rows at a time.

    Each chunk's logits exist only inside its own forward and are recomputed in backward (activation
    checkpointing per chunk), so the peak is one chunk's [chunk_rows, V/TP] fp32 logits, not N of them.
    ``chunk_rows <= 0`` runs all N rows at once without recomputation.
    """

    def one(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return token_logprobs(head(h), t, tp_group)

    if chunk_rows <= 0:
        return one(hidden, targets)
    if hidden.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float32, device=hidden.device)
    grad = torch.is_grad_enabled()
    parts = []
    for i in range(0, hidden.shape[0], chunk_rows):
        h, t = hidden[i : i + chunk_rows], targets[i : i + chunk_rows]
        parts.append(checkpoint(one, h, t, use_reentrant=False) if grad else one(h, t))
    return torch.cat(parts)
