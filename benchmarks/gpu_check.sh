#!/usr/bin/env bash
# GPU acceptance check on one GPU (target: under 8 minutes on one H200), printing one summary table.
#
#   bash benchmarks/gpu_check.sh                 # needs CUDA; Transformer Engine for the TE rows
#   PEAK_TFLOPS=989 bash benchmarks/gpu_check.sh # dense bf16 peak of the card, for the MFU column
#
# Rows (each with its own time limit; a failing row does not stop the others):
#   1. TE layer spec vs local spec vs reference: logits + gradients fp32, logits bf16, under the
#      cuDNN fused attention backend and the flash-attention backend (tests/models/test_te_parity.py;
#      the inputs include a left-padded row: the kernel sees it right-padded, models/llada/padding.py);
#   2. GPU-marked tests of the suite (pytest -m gpu), then the whole RL loop on the GPU: 2 BGPO steps of
#      the tiny Sudoku recipe in bf16 with megatron's distributed optimizer, saved as a checkpoint;
#   3. memory of one BGPO / VRPO-OL update vs n_t at LLaDA-8B width, 4 layers, bf16 (the paper's Fig. 1),
#      and VRPO-OL with full activation recomputation (benchmarks/memory_vs_nt.py);
#   4. fwd+bwd throughput / MFU of 4 decoder layers at 8B width in bf16 (benchmarks/layer_mfu.py);
#   5. sampler tokens/s, plain vs prefix cache vs threshold decoding (benchmarks/sampler_speed.py).
# Full outputs land in ${OUT:-gpu_check_out}/; paste the summary into docs/benchmarks.md with the card name.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore
if ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: no CUDA device visible" >&2
  exit 1
fi
CARD=$("$PY" -c 'import torch; print(torch.cuda.get_device_name())')
SUMMARY=()

row() {  # row NAME LIMIT_S COMMAND...: run, keep the log, record status and the last line
  local name=$1 limit=$2
  shift 2
  local log="$OUT/${name// /_}.log" start=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$? took=$((SECONDS - start))
  local status=PASS
  [ $rc -eq 124 ] && status="TIMEOUT(${limit}s)"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="FAIL(rc $rc)"
  SUMMARY+=("| $name | $status | ${took}s | $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-90) |")
  echo "== $name: $status (${took}s), log $log"
}

row "te parity, fused attn" 120 env NVTE_FUSED_ATTN=1 NVTE_FLASH_ATTN=0 \
  "$PY" -m pytest tests/models/test_te_parity.py -q -s -p no:cacheprovider
row "te parity, flash attn" 120 env NVTE_FUSED_ATTN=0 NVTE_FLASH_ATTN=1 \
  "$PY" -m pytest tests/models/test_te_parity.py -q -s -p no:cacheprovider
row "gpu-marked tests" 120 "$PY" -m pytest tests -m gpu -q -p no:cacheprovider
row "tiny data" 60 "$PY" -m megatron_bgpo.training.tiny --out "$OUT/tiny" --seed 1
row "RL loop, bf16 + distributed optimizer" 120 "$PY" -m torch.distributed.run --nproc-per-node 1 \
  tools/train.py --model "$OUT/tiny/config.json" --tokenizer "$OUT/tiny/tokenizer" --task sudoku_brief \
  --train-data "$OUT/tiny/train.csv" --eval-data "$OUT/tiny/eval.csv" --eval-samples 16 \
  --gen-length 32 --block-length 32 --diffusion-steps 8 --max-prompt-length 64 --objective bgpo \
  --num-mc-samples 2 --group-size 4 --rollout-batch-size 4 --mini-batch-size 4 --micro-batch-size 8 \
  --train-steps 2 --log-interval 1 --params-dtype bf16 --use-distributed-optimizer true --save "$OUT/tiny_run"
row "memory vs n_t, 8B width x4, bf16" 150 "$PY" benchmarks/memory_vs_nt.py --shape llada-8b --layers 4 \
  --dtype bf16 --n-t 1 4 8 16 32 --prompt-len 64 --gen-len 256
row "memory, VRPO-OL + recompute full" 60 "$PY" benchmarks/memory_vs_nt.py --shape llada-8b --layers 4 \
  --dtype bf16 --objectives vrpo_ol --n-t 8 16 --recompute full --prompt-len 64 --gen-len 256
row "layer MFU, 8B width x4, bf16" 60 "$PY" benchmarks/layer_mfu.py --layers 4 --dtype bf16 --seq 2048 \
  --batch 4 ${PEAK_TFLOPS:+--peak-tflops "$PEAK_TFLOPS"}
row "sampler tokens/s" 60 "$PY" benchmarks/sampler_speed.py --model megatron --device cuda

echo
echo "## gpu_check on $CARD ($(date -u +%Y-%m-%d))"
echo "| check | status | time | last line of its log |"
echo "|---|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
echo
for f in "$OUT"/memory*.log "$OUT"/layer*.log "$OUT"/sampler*.log; do
  [ -f "$f" ] && { echo "### $(basename "$f")"; grep -E '^(\||#|bgpo|vrpo)' "$f"; echo; }
done
