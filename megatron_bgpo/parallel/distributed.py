"""Process-group setup: torch.distributed (nccl on GPU, gloo on CPU) and Megatron parallel state.

Everything is driven by the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and an explicit `ParallelConfig`; no hidden globals beyond the ones megatron-core keeps
in `parallel_state`, which we expose as a `ProcessGroupCollection` to pass around explicitly.
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from megatron_bgpo.parallel import cpu_compat
from megatron_bgpo.parallel.groups import ParallelGroups


@dataclass(frozen=True)
class ParallelConfig:
    """Model-parallel layout. Data parallel size is derived: world_size / (tp * pp)."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: int | None = None
    # Experts split over this many ranks of the data-parallel dimension (MoE models only).
    expert_model_parallel_size: int = 1

    def __post_init__(self) -> None:
        sizes = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size")
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        vpp = self.virtual_pipeline_model_parallel_size
        if vpp is not None and (vpp < 1 or self.pipeline_model_parallel_size == 1):
            raise ValueError(
                f"virtual_pipeline_model_parallel_size={vpp} needs "
                "pipeline_model_parallel_size > 1 and vpp >= 1"
            )

    @property
    def model_parallel_size(self) -> int:
        return self.tensor_model_parallel_size * self.pipeline_model_parallel_size

    def data_parallel_size(self, world_size: int) -> int:
        """DP size for ``world_size`` ranks; raises if the layout does not tile the world."""
        if world_size % self.model_parallel_size != 0:
            raise ValueError(
                f"world size {world_size} is not divisible by tensor_model_parallel_size "
                f"({self.tensor_model_parallel_size}) x pipeline_model_parallel_size "
                f"({self.pipeline_model_parallel_size}) = {self.model_parallel_size}"
            )
        dp = world_size // self.model_parallel_size
        ep = self.expert_model_parallel_size
        if dp % ep != 0:
            raise ValueError(
                f"expert_model_parallel_size={ep} does not divide the data-parallel size {dp} "
                f"(world {world_size} / (tp x pp))"
            )
        return dp


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def init_distributed(backend: str | None = None, timeout_minutes: int = 30) -> DistEnv:
    """Initialise torch.distributed from torchrun's environment (single process if absent).

    Backend: ``nccl`` when CUDA is available, ``gloo`` otherwise (and then the CPU compatibility
    layer is installed). Idempotent.
    """
    cpu_compat.apply()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "gloo" if cpu_compat.cpu_mode() else "nccl"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def initialize_model_parallel(config: ParallelConfig):
    """Create Megatron's TP/PP/DP groups and return them as a `ProcessGroupCollection` (wrap it in a
    `ParallelGroups` with :func:`parallel_groups` to pass around)."""
    from megatron.core import parallel_state
    from megatron.core.process_groups_config import ProcessGroupCollection

    if not dist.is_initialized():
        raise RuntimeError("initialize_model_parallel: call init_distributed() first")
    config.data_parallel_size(dist.get_world_size())  # validates the layout with a clear message
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=config.tensor_model_parallel_size,
        pipeline_model_parallel_size=config.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=config.virtual_pipeline_model_parallel_size,
        expert_model_parallel_size=config.expert_model_parallel_size,
    )
    return ProcessGroupCollection.use_mpu_process_groups()


def set_seed(seed: int) -> None:
    """Seed python, numpy, torch and Megatron's model-parallel RNG tracker (after model parallel init).

    TP ranks get different tracker streams for tensor-parallel regions, identical default streams.
    """
    from megatron.core import parallel_state, tensor_parallel

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if parallel_state.model_parallel_is_initialized():
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
        torch.manual_seed(seed)


def parallel_groups(config: ParallelConfig, env: DistEnv) -> ParallelGroups:
    """:func:`initialize_model_parallel` for ``config``, its collection kept as `ParallelGroups`."""
    return ParallelGroups(initialize_model_parallel(config), env.device)
