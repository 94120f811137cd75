# megatron-bgpo on an NGC PyTorch container (Python 3.12; CUDA, NCCL, Transformer Engine and apex preinstalled).
# The container's torch is kept: setup.py only sets a lower bound on torch.
FROM nvcr.io/nvidia/pytorch:25.10-py3

WORKDIR /workspace/megatron-bgpo
COPY . .
RUN pip install --no-cache-dir -e ".[test]"

# Multi-node launch reads NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, GPUS_PER_NODE from the environment.
CMD ["bash", "examples/bgpo_llada_8b.sh"]
