"""Vocab-sharded logits: which ids a rank holds, and reductions over the shards without a gather.

Under tensor parallelism each TP rank holds logits for ids ``[vocab_start, vocab_start + V_local)``
(Megatron's ``VocabParallelEmbedding`` / column-parallel output layer split). Everything here works
on the local slice and combines ``[B, T]``-sized statistics with all-reduces (max, logsumexp,
owner-sum), never the full ``[B, T, V]`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["VocabShard", "token_logprobs"]


@dataclass(frozen=True)
class VocabShard:
    """This rank's slice of the vocabulary.

    tp_group: tensor-parallel group the vocab is split over; None = no TP (one rank holds all ids).
    vocab_start: first global id held by this rank.
    real_vocab_size: ids >= this are padding rows (Megatron pads the vocab to a multiple of
        128 * TP); their logits are treated as -inf. None = no padding.
    """

    tp_group: dist.ProcessGroup | None = None
    vocab_start: int = 0
    real_vocab_size: int | None = None

    @property
    def distributed(self) -> bool:
        return self.tp_group is not None and dist.get_world_size(self.tp_group) > 1

    def all_reduce(self, x: Tensor, op: dist.ReduceOp.RedOpType) -> Tensor:
        """In-place all-reduce over the TP group (no-op without TP); returns ``x``."""
        if self.distributed:
            dist.all_reduce(x, op=op, group=self.tp_group)
        return x

    def global_ids(self, local_size: int, device: torch.device) -> Tensor:
        """[V_local] global ids of the local slice."""
        return torch.arange(self.vocab_start, self.vocab_start + local_size, device=device)

    def local_index(self, token_id: int, local_size: int) -> int | None:
        """Local column of a global id, or None if another rank holds it."""
        i = token_id - self.vocab_start
        return i if 0 <= i < local_size else None

    def mask_padding(self, logits: Tensor) -> Tensor:
        """Set padded-vocab columns to -inf (in place on ``logits`` [..., V_local])."""
        if self.real_vocab_size is not None:
            first_pad = self.real_vocab_size - self.vocab_start
            if first_pad < logits.shape[-1]:
                logits[..., max(first_pad, 0) :] = float("-inf")
        return logits


def _logsumexp(logits: Tensor, shard: VocabShard) -> Tensor:
    """Global logsumexp over the vocab: [..., V_local] -> [...] (one MAX and one SUM all-reduce)."""
    m = logits.amax(-1)
    shard.all_reduce(m, dist.ReduceOp.MAX)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.exp(logits - m_safe.unsqueeze(-1)).sum(-1)
    shard.all_reduce(s, dist.ReduceOp.SUM)
    return m_safe + torch.log(s)


def token_logprobs(logits: Tensor, targets: Tensor, shard: VocabShard | None = None) -> Tensor:
    """log softmax(logits)[target] from vocab-sharded logits, in fp32.

    logits: [..., V_local] (any float dtype); targets: [...] global ids -> [...] fp32.
    Reference/test helper; the model package has its own fused vocab-parallel version.
    """
    shard = shard or VocabShard()
    lg = shard.mask_padding(logits.float().clone())
    v_local = lg.shape[-1]
    lse = _logsumexp(lg, shard)
    local = targets - shard.vocab_start
    owned = (local >= 0) & (local < v_local)
    picked = lg.gather(-1, local.clamp(0, v_local - 1).unsqueeze(-1)).squeeze(-1)
    picked = torch.where(owned, picked, torch.zeros_like(picked))
    shard.all_reduce(picked, dist.ReduceOp.SUM)
    return picked - lse
