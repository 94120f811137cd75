"""megatron-bgpo: Megatron-Core reinforcement learning for diffusion LLMs (BGPO on LLaDA)."""

__version__ = "0.1.0"
