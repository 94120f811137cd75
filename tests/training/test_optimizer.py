"""The LR schedule runs over optimizer updates: an off-policy run (2 updates per rollout) warms up and
decays over all its updates, not over the first half (hand-derived megatron schedule values)."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_bgpo.training.config import OptimArgs, parse_args
from megatron_bgpo.training.optimizer import build_scheduler, updates_per_step


def _lrs(args: OptimArgs, train_steps: int, per_step: int) -> list[float]:
    """LR in effect for each optimizer update 1..train_steps * per_step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    sched = build_scheduler(args, opt, train_steps, per_step)
    out = []
    for _ in range(train_steps * per_step):
        out.append(opt.param_groups[0]["lr"])
        sched.step(increment=1)
    out.append(opt.param_groups[0]["lr"])  # after the last update
    return out


@pytest.mark.parametrize("style", ["cosine", "linear"])
def test_two_updates_per_rollout_decay_over_all_updates(style: str) -> None:
    lr, min_lr, steps, warm = 1e-3, 1e-5, 6, 1
    args = OptimArgs(lr=lr, min_lr=min_lr, lr_decay_style=style, lr_warmup_steps=warm)
    lrs = _lrs(args, steps, per_step=2)  # 12 updates, warm-up 2 updates, decay over updates 2..12
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(lr / 2) and lrs[2] == pytest.approx(lr)
    for n in range(2, 13):
        ratio = (n - 2) / 10
        shape = 0.5 * (math.cos(math.pi * ratio) + 1) if style == "cosine" else 1 - ratio
        assert lrs[n] == pytest.approx(min_lr + (lr - min_lr) * shape, rel=1e-9), n
    assert lrs[7] > min_lr + 0.4 * (lr - min_lr)  # half-way through the run, half-way down
    assert lrs[12] == pytest.approx(min_lr)


def test_updates_per_step_follows_the_objective() -> None:
    off = parse_args(["--rollout-batch-size", "16", "--mini-batch-size", "8"])
    assert updates_per_step(off) == 2
    sft = parse_args(["--objective", "elbo_sft", "--rollout-batch-size", "16", "--mini-batch-size", "8"])
    assert updates_per_step(sft) == 1
    assert updates_per_step(parse_args([])) == 1
