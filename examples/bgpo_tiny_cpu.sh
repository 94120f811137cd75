#!/usr/bin/env bash
# The tiny end-to-end run on 2 CPU cores (gloo): a ~1M-parameter LLaDA-shaped model learns 4x4 Sudoku
# (task sudoku_brief: d1's reward, only the puzzle line as prompt).
#   1. generated puzzles + a SentencePiece tokenizer trained on the task text + a tiny config;
#   2. masked-diffusion SFT (masked-token cross-entropy, objective masked_sft; 2 data-parallel ranks);
#   3. BGPO with tensor parallelism TP=2: rollouts with the diffusion sampler on the training model,
#      rewards (fraction of empty cells filled correctly), group advantages, MC-sample micro-batches;
#      16 prompts x 8 samples per rollout, two optimizer steps of 8 prompts each (off-policy BGPO);
#   4. evaluation (greedy) every few steps; metrics also in $OUT/bgpo/metrics.jsonl, and the reward
#      curve printed at the end (tools/reward_curve.py).
# Usage: bash examples/bgpo_tiny_cpu.sh            (OUT=runs/tiny, SFT_STEPS=600, BGPO_STEPS=30 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/tiny}
SFT_STEPS=${SFT_STEPS:-600}
BGPO_STEPS=${BGPO_STEPS:-30}
TORCHRUN=("$PY" -m torch.distributed.run --nproc-per-node 2 --master-port "${MASTER_PORT:-29511}")
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore

"$PY" -m megatron_bgpo.training.tiny --out "$OUT/base"

DATA=(--task sudoku_brief --train-data "$OUT/base/train.csv" --eval-data "$OUT/base/eval.csv" --eval-samples 64
      --max-prompt-length 64)
GEN=(--gen-length 32 --block-length 32 --diffusion-steps 8)

echo "== SFT: $SFT_STEPS steps, DP=2 =="
"${TORCHRUN[@]}" tools/train.py --model "$OUT/base/config.json" --tokenizer "$OUT/base/tokenizer" \
  "${DATA[@]}" "${GEN[@]}" --objective masked_sft --num-mc-samples 1 --rollout-batch-size 32 \
  --mini-batch-size 32 --micro-batch-size 16 --lr 3e-3 --lr-warmup-steps 10 --lr-decay-style cosine \
  --min-lr 2e-4 --adam-beta2 0.95 --train-steps "$SFT_STEPS" --log-interval 50 --eval-interval 200 \
  --save "$OUT/sft"

echo "== BGPO: $BGPO_STEPS steps, TP=2 =="
"${TORCHRUN[@]}" tools/train.py --load "$OUT/sft" --finetune true --tensor-model-parallel-size 2 \
  "${DATA[@]}" "${GEN[@]}" --objective bgpo --num-mc-samples 2 --group-size 8 --rollout-batch-size 16 \
  --mini-batch-size 8 --micro-batch-size 32 --temperature 1.0 --lr 1e-4 --adam-beta2 0.95 \
  --train-steps "$BGPO_STEPS" --log-interval 1 --eval-interval 5 --save "$OUT/bgpo" "$@"

echo "== reward curve (means over 5 steps; eval = greedy, 64 held-out puzzles) =="
"$PY" tools/reward_curve.py "$OUT/bgpo/metrics.jsonl" --window 5
