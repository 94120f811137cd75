"""`ParallelGroups`: this rank's TP/PP/DP/MP process groups, passed explicitly to whatever needs one.

Built from the `ProcessGroupCollection` that :func:`initialize_model_parallel` returns; ranks and
pipeline-stage positions are read from the groups themselves, so code outside ``parallel/`` never
reads megatron-core's ``parallel_state`` globals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ParallelGroups:
    """Process groups of this rank. ``pgs``: megatron-core's collection (for model builders and DDP)."""

    pgs: object  # megatron.core.process_groups_config.ProcessGroupCollection
    device: torch.device

    @property
    def tp(self):
        return self.pgs.tp

    @property
    def pp(self):
        return self.pgs.pp

    @property
    def dp(self):
        return self.pgs.dp

    @property
    def mp(self):
        """Model-parallel (TP x PP) group: the ranks of one model replica."""
        return self.pgs.mp

    @property
    def tp_rank(self) -> int:
        return dist.get_rank(self.tp)

    @property
    def tp_size(self) -> int:
        return dist.get_world_size(self.tp)

    @property
    def pp_rank(self) -> int:
        return dist.get_rank(self.pp)

    @property
    def pp_size(self) -> int:
        return dist.get_world_size(self.pp)

    @property
    def dp_rank(self) -> int:
        return dist.get_rank(self.dp)

    @property
    def dp_size(self) -> int:
        return dist.get_world_size(self.dp)

    @property
    def is_first_stage(self) -> bool:
        """First pipeline stage (of this rank's physical stages; virtual stages ignored)."""
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    @property
    def pp_last_rank(self) -> int:
        """Global rank of the last pipeline stage of this rank's pipeline."""
        return dist.get_global_rank(self.pp, self.pp_size - 1)

    @property
    def tp_group_or_none(self):
        """The TP group, or None without tensor parallelism (vocab-parallel helpers skip collectives)."""
        return self.tp if self.tp_size > 1 else None

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank of the world."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def replica_sum(self, value: float, loss_rank: bool = False) -> float:
        """Sum of ``value`` over data-parallel replicas, one rank counted per replica: TP rank 0 of the
        last pipeline stage for losses (only it computes them, ``loss_rank``), of the first otherwise.
        The result is known on every rank."""
        stage_ok = self.is_last_stage if loss_rank else self.is_first_stage
        counted = stage_ok and self.tp_rank == 0
        t = torch.tensor([float(value) if counted else 0.0], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item()


def current_groups(device: torch.device | None = None) -> ParallelGroups:
    """The groups megatron-core's parallel state holds (for callers that did not keep the collection
    :func:`initialize_model_parallel` returned, e.g. tests building a denoiser by hand)."""
    from megatron.core.process_groups_config import ProcessGroupCollection

    from megatron_bgpo.parallel.cpu_compat import default_device

    return ParallelGroups(ProcessGroupCollection.use_mpu_process_groups(), device or default_device())


def destroy_model_parallel() -> None:
    """Tear down megatron-core's parallel state and torch.distributed (end of a tool's run)."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
