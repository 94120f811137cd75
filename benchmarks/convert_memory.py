"""Peak host memory of HF <-> Megatron conversion on a synthetic checkpoint with real LLaDA-8B shapes.

    .venv/bin/python benchmarks/convert_memory.py --layers 2 --layouts 1x1,2x1,1x2

Writes a random checkpoint with LLaDA-8B's tensor shapes (d_model 4096, ffn 12288, vocab 126464,
32 heads) but ``--layers`` blocks, in bf16 and the real by-type shard grouping, then runs the real
entry points as fresh processes: ``torchrun tools/convert_hf.py import`` at each TP x PP layout and
``python tools/convert_hf.py export``. Every process reports its peak RSS (``ru_maxrss``) and its RSS
after imports (torch + megatron-core); the table shows both per layout (max over ranks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "convert_hf.py"
GB = 1e9


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="transformer blocks (LLaDA-8B has 32)")
    p.add_argument("--layouts", default="1x1,2x1,1x2", help="comma-separated TPxPP import layouts")
    p.add_argument("--shard-size", default="1GB", help="HF shard size (several by-type shards)")
    p.add_argument("--workdir", default=None, help="where to write checkpoints (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    p.add_argument("--write-synthetic", default=None, help=argparse.SUPPRESS)  # internal: child step
    return p.parse_args()


def run(cmd: list[str]) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def write_synthetic(folder: Path, layers: int, shard_size: str) -> None:
    """Child-process entry: write the synthetic checkpoint and print its description."""
    import torch

    from megatron_bgpo.checkpointing.hf_io import expected_bytes
    from megatron_bgpo.checkpointing.synthetic import write_random_hf_checkpoint
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.models.llada.reference import hf_tensor_shapes

    cfg = get_preset("llada-8b").replace(n_layers=layers)
    write_random_hf_checkpoint(folder, cfg, dtype=torch.bfloat16, shard_size=shard_size)
    largest = max(math.prod(s) for s in hf_tensor_shapes(cfg).values()) * 2
    info = {"params": cfg.num_parameters, "bytes": expected_bytes(cfg, torch.bfloat16), "largest": largest}
    print(json.dumps({**info, "shards": len(list(folder.glob("model-*.safetensors")))}))


def main(args: argparse.Namespace) -> None:
    """Runs every step as a child process and imports no torch itself: a child's ru_maxrss starts
    from its parent's resident size at fork, so a large parent would inflate every measurement."""
    work = Path(args.workdir or tempfile.mkdtemp(prefix="convert_memory_"))
    rows = []
    try:
        hf_dir = work / "hf"
        me = [sys.executable, str(Path(__file__).resolve()), "--layers", str(args.layers)]
        (info,) = run([*me, "--shard-size", args.shard_size, "--write-synthetic", str(hf_dir)])
        total = info["bytes"]
        print(
            f"synthetic LLaDA-8B shapes, {args.layers} layers: {info['params'] / 1e9:.2f} B params, "
            f"{total / GB:.2f} GB bf16 in {info['shards']} by-type shards; "
            f"largest tensor {info['largest'] / GB:.2f} GB"
        )
        for layout in args.layouts.split(","):
            tp, pp = (int(x) for x in layout.lower().split("x"))
            out = work / f"megatron-tp{tp}pp{pp}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(tp * pp)]
            cmd += [str(TOOL), "import", "--hf-dir", str(hf_dir), "--out", str(out), "--tp", str(tp)]
            reports = run([*cmd, "--pp", str(pp)])
            rows.append((f"import TP{tp} PP{pp}", tp * pp, reports, total / (tp * pp)))
        exported = work / "hf-export"
        source = work / f"megatron-tp{tp}pp{pp}"
        cmd = [sys.executable, str(TOOL), "export", "--megatron-dir", str(source), "--out", str(exported)]
        rows.append((f"export (from TP{tp} PP{pp})", 1, run([*cmd, "--shard-size", args.shard_size]), total))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        "| direction | processes | weights / processes (GB) | RSS after imports (GB) | peak RSS (GB) "
        "| peak - start (GB) | time (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, procs, reports, weights in rows:
        peak = max(r["peak_rss_bytes"] for r in reports)
        start = max(r["rss_start_bytes"] for r in reports)
        grow = max(r["peak_rss_bytes"] - r["rss_start_bytes"] for r in reports)
        secs = max(r["seconds"] for r in reports)
        print(
            f"| {name} | {procs} | {weights / GB:.2f} | {start / GB:.2f} | {peak / GB:.2f} | {grow / GB:.2f} "
            f"| {secs:.1f} |"
        )


if __name__ == "__main__":
    cli = parse_args()
    if cli.write_synthetic:
        write_synthetic(Path(cli.write_synthetic), cli.layers, cli.shard_size)
    else:
        main(cli)
