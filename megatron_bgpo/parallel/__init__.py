"""Distributed setup: process groups, Megatron parallel state, seeding, and the CPU compatibility layer."""

from megatron_bgpo.parallel.distributed import (
    DistEnv,
    ParallelConfig,
    init_distributed,
    initialize_model_parallel,
    set_seed,
)

__all__ = ["DistEnv", "ParallelConfig", "init_distributed", "initialize_model_parallel", "set_seed"]
