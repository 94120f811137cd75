"""megatron-bgpo: Megatron-Core RL for diffusion LLMs (BGPO on LLaDA)."""

from setuptools import find_packages, setup

setup(
    name="megatron-bgpo",
    version="0.1.0",
    description="Boundary-Guided Policy Optimization for diffusion LLMs on Megatron-Core",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["megatron_bgpo", "megatron_bgpo.*"]),
    python_requires=">=3.12",
    install_requires=[
        # Lower bound only: never replace the torch an NGC container ships.
        "torch>=2.6",
        "megatron-core~=0.19.2",
        # megatron-core 0.19 imports triton unconditionally; dist_checkpointing.save needs psutil.
        "triton; platform_system == 'Linux'",
        "psutil",
        "numpy",
        "safetensors>=0.4",
        "sentencepiece>=0.2",
        "tokenizers>=0.19",
        "jinja2>=3.1",
        "pyyaml",
        "math-verify>=0.7",
        "pyarrow",
        "tensorboard",
    ],
    extras_require={
        # Transformer Engine and apex come preinstalled in NGC PyTorch containers; see Dockerfile.
        "gpu": ["transformer-engine[pytorch]"],
        "hub": ["datasets", "transformers"],
        "wandb": ["wandb"],
        "test": ["pytest>=8", "ruff"],
    },
)
