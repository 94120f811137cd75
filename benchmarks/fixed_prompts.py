"""Overfit check for the RL update direction: train on ONE fixed rollout batch of prompts, evaluate on it.

Every step samples fresh responses for the same ``--rollout-batch-size`` prompts (the first batch the
data order would give) and the periodic greedy evaluation runs on exactly those prompts, so a correct
policy update must raise both rewards; a sign or bookkeeping error shows as flat or falling numbers.
Takes the trainer's flags (same launch as tools/train.py); prints the trainer's log lines.

    torchrun --nproc-per-node 2 benchmarks/fixed_prompts.py --load runs/tiny/sft --finetune true \
        --tensor-model-parallel-size 2 --task sudoku_brief --train-data runs/tiny/base/train.csv \
        --eval-data runs/tiny/base/eval.csv --max-prompt-length 64 --gen-length 32 --block-length 32 \
        --diffusion-steps 8 --objective bgpo --num-mc-samples 4 --group-size 8 --rollout-batch-size 8 \
        --mini-batch-size 8 --micro-batch-size 32 --lr 3e-4 --adam-beta2 0.95 --train-steps 20 \
        --log-interval 1 --eval-interval 5
"""

from __future__ import annotations

import dataclasses
import sys

from megatron_bgpo.cli import exit_on_bad_input
from megatron_bgpo.training.config import parse_args
from megatron_bgpo.training.loop import Trainer


def main(argv: list[str]) -> None:
    with exit_on_bad_input():
        trainer = Trainer(parse_args(argv))
    fixed = trainer.train_source.shard(0, trainer.groups.dp_rank, trainer.groups.dp_size)
    trainer.train_source.shard = lambda step, dp_rank, dp_size: fixed  # type: ignore[method-assign]
    whole = list(trainer.train_source.shard(0, 0, 1)[0])  # the whole fixed batch, on all ranks
    trainer.evaluate = dataclasses.replace(trainer.evaluate, examples=whole)
    trainer.run()


if __name__ == "__main__":
    main(sys.argv[1:])
