#!/usr/bin/env bash
# The tiny end-to-end run on 2 CPU cores (gloo): a ~1M-parameter LLaDA-shaped model learns 4x4 Sudoku
# (task sudoku_brief: d1's reward, only the puzzle line as prompt).
#   1. generated puzzles + a SentencePiece tokenizer trained on the task text + a tiny config
#      (RoPE base 10,000: with LLaDA-8B's 500,000 the copy step of this 65-token task is slow and
#      seed-dependent, docs/training.md);
#   2. masked-diffusion SFT (masked-token cross-entropy, objective masked_sft; 2 data-parallel ranks);
#   3. BGPO with tensor parallelism TP=2, on-policy: rollouts with the diffusion sampler on the training
#      model, rewards (fraction of empty cells filled correctly), group advantages, MC-sample
#      micro-batches (n_t = 2, discrete-l ELBO weights), one optimizer step per rollout of 16 prompts x 8;
#   4. evaluation on 256 held-out puzzles before BGPO (the frozen control) and every 10 steps: the
#      policy's reward (4 samples per puzzle at the rollout temperature, the same noise at every
#      evaluation, so the evaluations are paired) and greedy decoding; the curve is printed at the end.
# Usage: bash examples/bgpo_tiny_cpu.sh     (OUT=runs/tiny SEED=1 SFT_STEPS=500 BGPO_STEPS=30 by default;
#        JITTER=1e-6 adds that much noise to the initial weights, a perturbed-numerics check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/tiny}
SEED=${SEED:-1}     # one seed for the whole run: puzzles, tokenizer data, init, masks, sampling
JITTER=${JITTER:-0}
SFT_STEPS=${SFT_STEPS:-500}
BGPO_STEPS=${BGPO_STEPS:-30}
BGPO_LR=${BGPO_LR:-1e-4}
EVAL_SAMPLES=${EVAL_SAMPLES:-256}  # held-out puzzles per evaluation
EVAL_INTERVAL=${EVAL_INTERVAL:-10}  # BGPO steps between evaluations (and one before the first, one after the last)
TORCHRUN=("$PY" -m torch.distributed.run --nproc-per-node 2 --master-port "${MASTER_PORT:-29511}")
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore

"$PY" -m megatron_bgpo.training.tiny --out "$OUT/base" --seed "$SEED"

DATA=(--task sudoku_brief --train-data "$OUT/base/train.csv" --eval-data "$OUT/base/eval.csv" --eval-samples "$EVAL_SAMPLES"
      --max-prompt-length 64 --seed "$SEED")
GEN=(--gen-length 32 --block-length 32 --diffusion-steps 8)

echo "== SFT: $SFT_STEPS steps, DP=2 (seed $SEED) =="
"${TORCHRUN[@]}" tools/train.py --model "$OUT/base/config.json" --tokenizer "$OUT/base/tokenizer" \
  "${DATA[@]}" "${GEN[@]}" --objective masked_sft --num-mc-samples 1 --rollout-batch-size 32 \
  --mini-batch-size 32 --micro-batch-size 16 --lr 3e-3 --lr-warmup-steps 10 --lr-decay-style cosine \
  --min-lr 2e-4 --adam-beta2 0.95 --train-steps "$SFT_STEPS" --log-interval 50 \
  --eval-interval "$((SFT_STEPS / 2 > 0 ? SFT_STEPS / 2 : 1))" --init-jitter "$JITTER" --save "$OUT/sft"

echo "== BGPO: $BGPO_STEPS steps, TP=2 =="
"${TORCHRUN[@]}" tools/train.py --load "$OUT/sft" --finetune true --tensor-model-parallel-size 2 \
  "${DATA[@]}" "${GEN[@]}" --objective bgpo --num-mc-samples 2 --masking-mode discrete --group-size 8 \
  --rollout-batch-size 16 --mini-batch-size 16 --micro-batch-size 32 --temperature 1.0 --lr "$BGPO_LR" \
  --adam-beta2 0.95 --train-steps "$BGPO_STEPS" --log-interval 1 --eval-interval "$EVAL_INTERVAL" --eval-at-start true \
  --eval-temperature 1.0 --eval-samples-per-prompt 4 --save "$OUT/bgpo" "$@"

echo "== reward curve (means over 5 steps; eval = 256 held-out puzzles, step 0 = before BGPO) =="
"$PY" tools/reward_curve.py "$OUT/bgpo/metrics.jsonl" --window 5
