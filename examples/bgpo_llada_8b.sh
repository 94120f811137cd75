#!/usr/bin/env bash
# BGPO on LLaDA-8B-Instruct, multi-node torchrun. Every node runs this script with the same environment:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 GPUS_PER_NODE=8 bash examples/bgpo_llada_8b.sh
# First convert the HF checkpoint once (see docs/conversion.md):
#   torchrun --nproc-per-node 2 tools/convert_hf.py import --hf-dir LLaDA-8B-Instruct --out ckpt/llada-8b-instruct --tp 2
#
# Memory on 8 x 80 GB per node (TP=2, PP=1, DP = 4 x NNODES), bf16 weights, fp32 grads and Adam states:
#   weights   8.0e9 x 2 B / TP2                      =  8 GB per GPU
#   grads     8.0e9 x 4 B / TP2 (fp32 grad buffer)   = 16 GB
#   optimizer 8.0e9 x 12 B / TP2 / DP4 (distributed)  = 12 GB  (fp32 master + Adam m, v; halves again with 2 nodes)
#   activations: BGPO holds ONE micro-batch of canvases per pipeline stage whatever n_t: with prompt <= 512 and
#   response 512 tokens, 4 canvases of ~1024 tokens are a few GB; the 126k-vocab logits of those rows are
#   vocab-parallel (4 x 1024 x 63k x 4 B = 1 GB per GPU). The sampler's rollouts run forward-only.
# => ~40 GB per GPU leaves room for larger micro-batches; PP is not needed for 8B (use it for longer sequences).
# These are estimates from the arithmetic above, not measurements; measure with the peak_mem_mib metric.
set -euo pipefail
cd "$(dirname "$0")/.."

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RECIPE=${RECIPE:-examples/recipes/bgpo_math.yaml}
CKPT=${CKPT:-ckpt/llada-8b-instruct}
SAVE=${SAVE:-runs/bgpo_llada_8b}

DISTRIBUTED=(--nnodes "$NNODES" --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR"
             --master-port "$MASTER_PORT" --nproc-per-node "$GPUS_PER_NODE")
MODEL=(--config "$RECIPE" --load "$CKPT" --finetune true --params-dtype bf16)
PARALLEL=(--tensor-model-parallel-size 2 --pipeline-model-parallel-size 1 --use-distributed-optimizer true)
RL=(--objective bgpo --num-mc-samples 16 --group-size 8 --rollout-batch-size 16 --mini-batch-size 16
    --micro-batch-size 4)
CHECKPOINT=(--save "$SAVE" --save-interval 20 --keep-last 3)
LOGGING=(--log-interval 1 --eval-interval 20 --tensorboard-dir "$SAVE/tensorboard")

torchrun "${DISTRIBUTED[@]}" tools/train.py "${MODEL[@]}" "${PARALLEL[@]}" "${RL[@]}" "${CHECKPOINT[@]}" \
  "${LOGGING[@]}" "$@"
