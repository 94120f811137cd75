"""Distributed setup: process groups, Megatron parallel state, seeding, and the CPU compatibility layer."""

from megatron_bgpo.parallel.distributed import (
    DistEnv,
    ParallelConfig,
    init_distributed,
    initialize_model_parallel,
    parallel_groups,
    set_seed,
)
from megatron_bgpo.parallel.groups import ParallelGroups, current_groups, destroy_model_parallel

__all__ = [
    "DistEnv",
    "ParallelConfig",
    "ParallelGroups",
    "current_groups",
    "destroy_model_parallel",
    "init_distributed",
    "initialize_model_parallel",
    "parallel_groups",
    "set_seed",
]
