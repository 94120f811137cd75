#!/usr/bin/env bash
# The tiny recipe (examples/bgpo_tiny_cpu.sh) with an LLaDA-MoE-shaped model (docs/moe.md): 4 experts, top-2,
# QK-norm, every block MoE; SFT and BGPO on 2 gloo ranks with expert parallelism EP=2 (data parallel 2,
# each rank holding 2 experts). BGPO_PARALLEL sets BGPO's layout on the same 2 ranks, e.g.
# BGPO_PARALLEL="--tensor-model-parallel-size 2" (the MoE layers then run sequence-parallel inside; the
# EP=2 SFT checkpoint is resharded at load). Router aux loss off (the RL default, docs/moe.md).
# Usage: bash examples/bgpo_tiny_moe_cpu.sh   (OUT=runs/tiny_moe SFT_STEPS=500 BGPO_STEPS=30 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/tiny_moe}
SEED=${SEED:-1}
SFT_STEPS=${SFT_STEPS:-500}
BGPO_STEPS=${BGPO_STEPS:-30}
EVAL_SAMPLES=${EVAL_SAMPLES:-256}
EVAL_INTERVAL=${EVAL_INTERVAL:-10}
read -r -a BGPO_LAYOUT <<< "${BGPO_PARALLEL:---expert-model-parallel-size 2}"
TORCHRUN=("$PY" -m torch.distributed.run --nproc-per-node 2 --master-port "${MASTER_PORT:-29513}")
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore

"$PY" -m megatron_bgpo.training.tiny --out "$OUT/base" --seed "$SEED" --num-experts 4 --top-k 2

DATA=(--task sudoku_brief --train-data "$OUT/base/train.csv" --eval-data "$OUT/base/eval.csv" --eval-samples "$EVAL_SAMPLES"
      --max-prompt-length 64 --seed "$SEED")
GEN=(--gen-length 32 --block-length 32 --diffusion-steps 8)

echo "== SFT: $SFT_STEPS steps, DP=2 x EP=2 =="
"${TORCHRUN[@]}" tools/train.py --model "$OUT/base/config.json" --tokenizer "$OUT/base/tokenizer" \
  --expert-model-parallel-size 2 "${DATA[@]}" "${GEN[@]}" --objective masked_sft --num-mc-samples 1 \
  --rollout-batch-size 32 --mini-batch-size 32 --micro-batch-size 16 --lr 3e-3 --lr-warmup-steps 10 \
  --lr-decay-style cosine --min-lr 2e-4 --adam-beta2 0.95 --train-steps "$SFT_STEPS" --log-interval 50 \
  --eval-interval "$((SFT_STEPS / 2 > 0 ? SFT_STEPS / 2 : 1))" --save "$OUT/sft"

echo "== BGPO: $BGPO_STEPS steps, ${BGPO_LAYOUT[*]} =="
"${TORCHRUN[@]}" tools/train.py --load "$OUT/sft" --finetune true "${BGPO_LAYOUT[@]}" \
  "${DATA[@]}" "${GEN[@]}" --objective bgpo --num-mc-samples 2 --masking-mode discrete --group-size 8 \
  --rollout-batch-size 16 --mini-batch-size 16 --micro-batch-size 32 --temperature 1.0 --lr 1e-4 \
  --adam-beta2 0.95 --train-steps "$BGPO_STEPS" --log-interval 1 --eval-interval "$EVAL_INTERVAL" --eval-at-start true \
  --eval-temperature 1.0 --eval-samples-per-prompt 4 --save "$OUT/bgpo" "$@"
