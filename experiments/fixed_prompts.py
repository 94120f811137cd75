"""Overfit check for the RL update direction: train on ONE fixed rollout batch of prompts, evaluate on it.

The trainer with ``--overfit-batch true`` (megatron_bgpo/training/config.py): every step samples fresh
responses for the same ``--rollout-batch-size`` prompts (the first batch the data order gives) and the
periodic greedy evaluation scores exactly those prompts, so a correct policy update must raise both
rewards; a sign or bookkeeping error shows as flat or falling numbers. Takes the trainer's flags (same
launch as tools/train.py) and prints the trainer's log lines.

    torchrun --nproc-per-node 2 experiments/fixed_prompts.py --load runs/tiny/sft --finetune true \
        --tensor-model-parallel-size 2 --task sudoku_brief --train-data runs/tiny/base/train.csv \
        --max-prompt-length 64 --gen-length 32 --block-length 32 \
        --diffusion-steps 8 --objective bgpo --num-mc-samples 4 --group-size 8 --rollout-batch-size 8 \
        --mini-batch-size 8 --micro-batch-size 32 --lr 3e-4 --adam-beta2 0.95 --train-steps 20 \
        --log-interval 1 --eval-interval 5
"""

from __future__ import annotations

import sys

from megatron_bgpo.training.loop import main

if __name__ == "__main__":
    main([*sys.argv[1:], "--overfit-batch", "true"])
