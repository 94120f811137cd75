"""Is the tiny run's learning robust? The README's main job over seeds and perturbed numerics.

    python benchmarks/tiny_seeds.py --seeds 1 2 3 --jitter 0 1e-6      # 6 runs of examples/bgpo_tiny_cpu.sh

Each run is ``SEED=s JITTER=j bash examples/bgpo_tiny_cpu.sh`` in its own folder
(``--out``/seed{s}_jitter{j}); finished runs are reused unless ``--rerun``. The seed changes
everything random (puzzles, tokenizer data, init, masks, sampling); the jitter adds N(0, j^2) noise
to the initial weights, a stand-in for another CPU's rounding. Per run it reads the SFT and BGPO
``metrics.jsonl`` and prints: the SFT held-out reward (greedy), the policy's held-out reward
(sampled, the script's paired evaluation) before BGPO (= the frozen control) and after, the paired
gain with its standard error over the held-out puzzles and z = gain / SE, the greedy held-out reward
after BGPO, and the wall time; then mean and standard deviation over the runs.
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


def evals(path: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["step"]: r for r in rows if r["split"] == "eval"}


def run(seed: int, jitter: str, a: argparse.Namespace) -> dict[str, float]:
    out = Path(a.out) / f"seed{seed}_jitter{jitter}"
    done = out / "bgpo" / "metrics.jsonl"
    seconds = math.nan
    if not done.exists() or a.rerun:
        subprocess.run(["rm", "-rf", str(out)], check=True)
        env = dict(os.environ, SEED=str(seed), JITTER=jitter, OUT=str(out), PYTHON=sys.executable)
        env["MASTER_PORT"] = str(a.master_port)
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["bash", "examples/bgpo_tiny_cpu.sh"], cwd=REPO, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        (out / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
        (out / "run.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"error: seed {seed} jitter {jitter} failed; see {out / 'run.log'}")
    elif (out / "wall_seconds.txt").exists():
        seconds = float((out / "wall_seconds.txt").read_text())
    sft, bgpo = evals(out / "sft" / "metrics.jsonl"), evals(done)
    last = max(bgpo)
    gain, se = paired_gain_at(read_eval_rewards(done.with_name("eval_rewards.jsonl")), "sampled", last)
    return {
        "sft_greedy": sft[max(sft)]["reward_mean"],
        "before": bgpo[0]["reward_mean"],
        "after": bgpo[last]["reward_mean"],
        "gain": gain,
        "se": se,
        "z": gain / se if se > 0 else math.nan,
        "after_greedy": bgpo[last].get("greedy_reward_mean", math.nan),
        "minutes": seconds / 60,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--jitter", nargs="+", default=["0", "1e-6"])
    p.add_argument("--out", default="runs/tiny_seeds")
    p.add_argument("--master-port", type=int, default=29541)
    p.add_argument("--rerun", action="store_true")
    a = p.parse_args(argv)
    keys = ("sft_greedy", "before", "after", "gain", "se", "z", "after_greedy", "minutes")
    print(
        "| seed | jitter | SFT held-out (greedy) | before BGPO | after BGPO | gain | paired SE | z "
        "| after, greedy | min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed in a.seeds:
        for jitter in a.jitter:
            r = run(seed, jitter, a)
            rows.append(r)
            cells = " | ".join(_fmt(k, r[k]) for k in keys[:-1])
            print(f"| {seed} | {jitter} | {cells} | {r['minutes']:.1f} |", flush=True)
    for name, fn in (("mean", lambda v: sum(v) / len(v)), ("std", _std)):
        cells = " | ".join(_fmt(k if name == "mean" else "", fn([r[k] for r in rows])) for k in keys[:-1])
        print(f"| {name} | | {cells} | |")


def _fmt(key: str, value: float) -> str:
    return {"gain": f"{value:+.3f}", "z": f"{value:.1f}"}.get(key, f"{value:.3f}")


def _std(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / max(len(values) - 1, 1))


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
