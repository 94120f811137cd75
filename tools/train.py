"""RL training of a diffusion LLM (BGPO and baselines) on Megatron-Core.

    torchrun --nproc-per-node N tools/train.py --config examples/recipes/bgpo_math.yaml [--flag value ...]

All flags: ``tools/train.py --help`` (Megatron-style names; see megatron_bgpo/training/config.py).
"""

from megatron_bgpo.training.loop import main

if __name__ == "__main__":
    main()
