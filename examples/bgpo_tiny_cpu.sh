#!/usr/bin/env bash
# The tiny end-to-end run on 2 CPU cores (gloo): a ~1M-parameter LLaDA-shaped model learns 4x4 Sudoku.
#   1. generated puzzles + a SentencePiece tokenizer trained on the task text + a tiny config;
#   2. masked-diffusion SFT (the ELBO objective, 2 data-parallel ranks);
#   3. BGPO with tensor parallelism TP=2: rollouts with the diffusion sampler on the training model,
#      rewards (fraction of empty cells filled correctly), group advantages, MC-sample micro-batches;
#   4. evaluation (greedy) every few steps; metrics also in $OUT/bgpo/metrics.jsonl.
# Usage: bash examples/bgpo_tiny_cpu.sh            (OUT=runs/tiny, SFT_STEPS=200, BGPO_STEPS=16 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/tiny}
SFT_STEPS=${SFT_STEPS:-200}
BGPO_STEPS=${BGPO_STEPS:-16}
TORCHRUN=("$PY" -m torch.distributed.run --nproc-per-node 2 --master-port "${MASTER_PORT:-29511}")
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore

"$PY" -m megatron_bgpo.training.tiny --out "$OUT/base"

DATA=(--task sudoku --train-data "$OUT/base/train.csv" --eval-data "$OUT/base/eval.csv" --eval-samples 32
      --max-prompt-length 300)
GEN=(--gen-length 32 --block-length 32 --diffusion-steps 8)

echo "== SFT: $SFT_STEPS steps, DP=2 =="
"${TORCHRUN[@]}" tools/train.py --model "$OUT/base/config.json" --tokenizer "$OUT/base/tokenizer" \
  "${DATA[@]}" "${GEN[@]}" --objective elbo_sft --num-mc-samples 1 --rollout-batch-size 16 \
  --mini-batch-size 16 --micro-batch-size 16 --lr 2e-3 --lr-warmup-steps 10 --lr-decay-style cosine \
  --min-lr 2e-4 --train-steps "$SFT_STEPS" --log-interval 20 --eval-interval "$SFT_STEPS" --save "$OUT/sft"

echo "== BGPO: $BGPO_STEPS steps, TP=2 =="
"${TORCHRUN[@]}" tools/train.py --load "$OUT/sft" --finetune true --tensor-model-parallel-size 2 \
  "${DATA[@]}" "${GEN[@]}" --objective bgpo --num-mc-samples 4 --group-size 4 --rollout-batch-size 4 \
  --mini-batch-size 4 --micro-batch-size 16 --temperature 1.0 --lr 5e-5 --train-steps "$BGPO_STEPS" \
  --log-interval 1 --eval-interval 4 --save "$OUT/bgpo" "$@"
