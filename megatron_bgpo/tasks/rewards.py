"""Rewards across data-parallel ranks: score a shard on each rank, gather with ``all_gather_object``.

Two layouts:

- ``shard=False`` (default): each rank passes its *own* completions (e.g. its rollouts); every rank
  gets all ranks' scores, concatenated in rank order.
- ``shard=True``: every rank passes the *same* full lists; rank ``r`` scores the ``r``-th contiguous
  block and every rank gets the full, identical list back. This spreads expensive rewards (code
  execution) over the ranks.

Without an initialized ``torch.distributed`` (or with a world of one) scoring is local. Scoring
itself never raises (:meth:`Task.score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from megatron_bgpo.tasks.base import Score, Task


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous block ``[start, stop)`` of ``n`` items for ``rank`` (sizes differ by at most one)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _world(group: Any) -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def gather_scores(
    task: Task,
    completions: Sequence[str],
    examples: Sequence[Any],
    *,
    group: Any = None,
    shard: bool = False,
) -> list[Score]:
    """Score on this rank and gather over ``group`` (default: the whole world); see module docs."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
    rank, world = _world(group)
    if shard:
        start, stop = shard_bounds(len(completions), rank, world)
        local = task.score_batch(completions[start:stop], examples[start:stop])
    else:
        local = task.score_batch(completions, examples)
    if world == 1:
        return local
    import torch.distributed as dist

    gathered: list[list[Score] | None] = [None] * world
    dist.all_gather_object(gathered, local, group=group)
    return [score for part in gathered for score in (part or [])]


def gather_rewards(
    task: Task,
    completions: Sequence[str],
    examples: Sequence[Any],
    *,
    group: Any = None,
    shard: bool = False,
) -> list[float]:
    """:func:`gather_scores`, rewards only."""
    return [s.reward for s in gather_scores(task, completions, examples, group=group, shard=shard)]
