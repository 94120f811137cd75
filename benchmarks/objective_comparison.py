"""The BGPO paper's central comparison at small scale: objectives from one SFT start, paired seeds.

    bash examples/bgpo_tiny_cpu.sh                      # once: runs/tiny/{base,sft}
    python benchmarks/objective_comparison.py --sft runs/tiny/sft --base runs/tiny/base --seeds 1 2 3

Every setting runs ``tools/train.py`` (torchrun, 2 gloo ranks, DP=2) from the same SFT checkpoint with
the same rollout budget (``--train-steps`` x ``--prompts`` prompts x G responses, on-policy, one optimizer
step per rollout) and seed s, so all settings of a seed see the same prompts at every step and the
same held-out puzzles. The held-out evaluation (``--eval-samples`` puzzles x 4 samples at the rollout
temperature, the same sampler noise at every evaluation) runs before the first step, on the SFT model
(the frozen control), and after the last; the gain is the paired per-puzzle difference, with its
standard error over puzzles (``eval_rewards.jsonl``). Per run it also records seconds per update and
per rollout, and the peak resident memory of rank 0. The table gives mean +- standard error over
seeds of the gain, the mean paired z (gain / its SE) and the number of seeds with z > 2, the times
and the memory. ``frozen`` (lr 1e-12) is available as a sanity row (its gain must be ~0).

Settings (``--settings`` picks a subset): BGPO at n_t = 1, 4, 16; VRPO-OL at n_t = 4 (the paper's
largest that fit for math/planning; on this model every n_t fits, memory_vs_nt.py measures the
growth); diffu-GRPO (d1's one-step mean-field estimate); JustGRPO (exact AR-order likelihood, its own
left-to-right rollouts, and the k = 4 block variant); BGPO and VRPO-OL at n_t = 4 with complementary
mask pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from megatron_bgpo.training.eval_rewards import paired_gain_at, read_eval_rewards

REPO = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, list[str]] = {
    "frozen": ["--objective", "bgpo", "--num-mc-samples", "1", "--lr", "1e-12"],
    "bgpo_nt1": ["--objective", "bgpo", "--num-mc-samples", "1"],
    "bgpo_nt4": ["--objective", "bgpo", "--num-mc-samples", "4"],
    "bgpo_nt16": ["--objective", "bgpo", "--num-mc-samples", "16"],
    "vrpo_ol_nt4": ["--objective", "vrpo_ol", "--num-mc-samples", "4"],
    "diffu_grpo": ["--objective", "diffu_grpo", "--num-mc-samples", "1"],
    # JustGRPO: exact AR-order likelihood, rollouts decoded left to right (one-token blocks, one step
    # per token); the block variant scores 4 tokens per pass (8 passes for the 32-token canvas).
    "just_grpo": ["--objective", "just_grpo", "--block-length", "1", "--diffusion-steps", "32"],
    "just_grpo_k4": ["--objective", "just_grpo", "--ar-block-length", "4"],
    # coupled complementary masks at the same n_t (= forward passes) as bgpo_nt4 / vrpo_ol_nt4
    "bgpo_nt4_comp": ["--objective", "bgpo", "--num-mc-samples", "4", "--mc-coupling", "complementary"],
    "vrpo_ol_nt4_comp": ["--objective", "vrpo_ol", "--num-mc-samples", "4", "--mc-coupling", "complementary"],
}


def run_setting(name: str, seed: int, a: argparse.Namespace) -> dict[str, float]:
    """One training run; returns its summary (reads the run's metrics.jsonl)."""
    out = Path(a.out) / f"{name}_seed{seed}"
    metrics = out / "metrics.jsonl"
    if metrics.exists() and not a.rerun:
        print(f"[reuse] {metrics}", flush=True)
    else:
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        base = Path(a.base)
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-port", str(a.master_port), "tools/train.py",
            "--load", a.sft, "--finetune", "true", "--task", "sudoku_brief",
            "--train-data", str(base / "train.csv"), "--eval-data", str(base / "eval.csv"),
            "--eval-samples", str(a.eval_samples), "--max-prompt-length", "64",
            "--gen-length", "32", "--block-length", "32", "--diffusion-steps", "8",
            "--group-size", str(a.group_size), "--rollout-batch-size", str(a.prompts),
            "--mini-batch-size", str(a.prompts), "--micro-batch-size", str(a.micro_batch_size),
            "--temperature", "1.0", "--lr", str(a.lr), "--adam-beta2", "0.95", "--masking-mode", "discrete",
            "--train-steps", str(a.train_steps), "--log-interval", "1", "--eval-interval", str(a.train_steps),
            "--eval-at-start", "true", "--eval-temperature", "1.0", "--eval-samples-per-prompt", "4",
            "--seed", str(seed), "--save", str(out),
            *SETTINGS[name],
        ]  # fmt: skip
        t0 = time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} seed {seed} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        print(f"[done] {name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = {r["step"]: r for r in records if r["split"] == "train"}
    evals = {r["step"]: r["reward_mean"] for r in records if r["split"] == "eval"}
    gain, se = paired_gain_at(read_eval_rewards(out / "eval_rewards.jsonl"), "sampled", a.train_steps)
    return {
        "eval_before": evals[0],
        "gain": gain,
        "z": gain / se if se > 0 else math.nan,
        "update_s": sum(r["update_s"] for r in train.values()) / len(train),
        "rollout_s": sum(r["rollout_s"] for r in train.values()) / len(train),
        "peak_mem_mib": max(r["peak_mem_mib"] for r in train.values()),
    }


def mean_se(values: list[float]) -> str:
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return f"{m:.3f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return f"{m:+.3f} +- {sd / math.sqrt(n):.3f}"


def table(results: dict[str, dict[int, dict]]) -> str:
    lines = [
        "| setting | held-out before | held-out gain (mean +- SE over seeds) | mean paired z | seeds z > 2 "
        "| update s/step | rollout s/step | peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, per_seed in results.items():
        rows = [per_seed[s] for s in sorted(per_seed)]
        avg = {k: sum(r[k] for r in rows) / len(rows) for k in ("eval_before", "z", "update_s", "rollout_s")}
        lines.append(
            f"| {name} | {avg['eval_before']:.3f} | {mean_se([r['gain'] for r in rows])} | {avg['z']:.1f} | "
            f"{sum(r['z'] > 2 for r in rows)}/{len(rows)} | {avg['update_s']:.2f} | {avg['rollout_s']:.2f} | "
            f"{max(r['peak_mem_mib'] for r in rows):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sft", default="runs/tiny/sft", help="SFT checkpoint every setting starts from")
    p.add_argument("--base", default="runs/tiny/base", help="tiny-run folder with train.csv / eval.csv")
    p.add_argument("--out", default="runs/objective_comparison")
    p.add_argument(
        "--settings", nargs="+", default=[s for s in SETTINGS if s != "frozen"], choices=list(SETTINGS)
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=16, help="prompts per rollout (= per optimizer step)")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--micro-batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--master-port", type=int, default=29531)
    p.add_argument("--rerun", action="store_true", help="rerun settings whose metrics.jsonl exists")
    a = p.parse_args(argv)
    for path in (a.sft, a.base):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{path} is not a folder (run examples/bgpo_tiny_cpu.sh first)")
    results: dict[str, dict[int, dict]] = {name: {} for name in a.settings}
    for seed in a.seeds:  # seed-major: the table after each seed covers every setting
        for name in a.settings:
            results[name][seed] = run_setting(name, seed, a)
        print(table(results), flush=True)
    print(
        f"\n{len(a.seeds)} seeds {a.seeds}; {a.train_steps} steps x {a.prompts} prompts x G {a.group_size}, "
        f"lr {a.lr}, held-out = {a.eval_samples} puzzles x 4 samples at temperature 1\n"
    )
    print(table(results))


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
