"""Rewards across ranks: scored once per model-parallel group, gathered over data-parallel ranks.

Every TP/PP rank of a data-parallel replica holds the same completions. Scoring them on each rank
separately can disagree (code and math rewards have wall-clock timeouts), and then the ranks of one
replica build different advantages and micro-batch lists: a hang or silently wrong gradients. So with
``mp_group`` (the replica's model-parallel group) only its first rank scores and broadcasts the
scores to the others (:func:`replica_scores`); :func:`check_replica_consistent` asserts agreement.

Two layouts over the data-parallel ``group``:

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


def replica_scores(
    task: Task, completions: Sequence[str], examples: Sequence[Any], mp_group: Any = None
) -> list[Score]:
    """Scores computed by the first rank of ``mp_group`` only, broadcast to all its ranks."""
    _, size = _world(mp_group)
    if mp_group is None or size == 1:
        return task.score_batch(completions, examples)
    import torch.distributed as dist

    source = dist.get_global_rank(mp_group, 0)
    box: list[list[Score] | None] = [None]
    if dist.get_rank() == source:
        box[0] = task.score_batch(completions, examples)
    dist.broadcast_object_list(box, src=source, group=mp_group)
    scores = box[0]
    if scores is None or len(scores) != len(completions):
        raise RuntimeError(f"error: rank {source} broadcast no scores for {len(completions)} completions")
    return scores


def check_replica_consistent(values: Any, mp_group: Any, what: str) -> None:
    """Raise on every rank of ``mp_group`` unless all hold the same tensor ``values`` (bitwise)."""
    _, size = _world(mp_group)
    if mp_group is None or size == 1:
        return
    import torch
    import torch.distributed as dist

    flat = torch.nan_to_num(values.detach().reshape(-1).to(torch.float64))
    for part in (torch.tensor([float(flat.numel())], dtype=torch.float64), flat):  # the size first
        both = torch.cat([part, -part])
        peak = both.clone()
        dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=mp_group)  # max == min everywhere iff equal
        if not torch.equal(peak, both):
            raise RuntimeError(
                f"error: the ranks of one model-parallel group disagree on the {what} "
                f"(rank {dist.get_rank()}); all ranks of a replica must use identical values"
            )


def gather_scores(
    task: Task,
    completions: Sequence[str],
    examples: Sequence[Any],
    *,
    group: Any = None,
    shard: bool = False,
    mp_group: Any = None,
) -> list[Score]:
    """Score (once per ``mp_group``) and gather over ``group`` (default: the whole world); see module docs."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
    rank, world = _world(group)
    if shard:
        start, stop = shard_bounds(len(completions), rank, world)
        local = replica_scores(task, completions[start:stop], examples[start:stop], mp_group)
    else:
        local = replica_scores(task, completions, examples, mp_group)
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
    mp_group: Any = None,
) -> list[float]:
    """:func:`gather_scores`, rewards only."""
    scores = gather_scores(task, completions, examples, group=group, shard=shard, mp_group=mp_group)
    return [s.reward for s in scores]
