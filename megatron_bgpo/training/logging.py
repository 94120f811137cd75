"""Per-step metrics: rank-0 console progress with ETA, TensorBoard, and W&B when installed and asked for."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from megatron_bgpo.parallel import cpu_compat


def peak_memory_mib() -> float:
    """Peak device memory (GPU) or peak resident set size (CPU) of this process, in MiB."""
    device_mib = cpu_compat.peak_device_memory_mib()
    if device_mib is not None:
        return device_mib
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MetricsLogger:
    """Writes metrics from global rank 0 only: console line, TensorBoard scalars, metrics.jsonl."""

    def __init__(
        self,
        total_steps: int,
        tensorboard_dir: str | None = None,
        wandb_project: str | None = None,
        jsonl_path: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        self.total_steps = total_steps
        self.start = time.perf_counter()
        self.first_step: int | None = None
        self.tb = None
        self.wandb = None
        self.jsonl = None
        self.rewards_path: Path | None = None
        if not self.rank0:
            return
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(tensorboard_dir)
        if wandb_project:
            try:
                import wandb
            except ImportError:
                print(
                    "warning: --wandb-project given but wandb is not installed; skipping W&B", file=sys.stderr
                )
            else:
                self.wandb = wandb.init(project=wandb_project, config=config or {})
        if jsonl_path:
            Path(jsonl_path).parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.rewards_path = Path(jsonl_path).with_name("eval_rewards.jsonl")

    def log(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.rank0:
            return
        if self.first_step is None and prefix == "train":
            self.first_step, self.start = step, time.perf_counter()
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        eta = ""
        if self.first_step is not None:
            per_step = (time.perf_counter() - self.start) / (step - self.first_step + 1)
            eta = f" | eta {per_step * (self.total_steps - step - 1) / 60:.1f} min"
        print(f"[{prefix}] step {step + 1}/{self.total_steps} {shown}{eta}", flush=True)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step + 1)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({f"{prefix}/{k}": v for k, v in metrics.items()}, step=step + 1)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step + 1, "split": prefix, **metrics}) + "\n")
            self.jsonl.flush()

    def log_rewards(self, step: int, kind: str, rewards: list[float]) -> None:
        """Per-example held-out rewards (``eval_rewards.jsonl`` beside metrics.jsonl, in the eval
        set's order), so evaluations can be compared example by example (paired standard errors)."""
        if self.rewards_path is None:
            return
        with open(self.rewards_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step + 1, "kind": kind, "rewards": rewards}) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.wandb is not None:
            self.wandb.finish()
