"""Peak memory and time of one policy update vs the number of MC samples n_t: BGPO vs VRPO-OL.

    python benchmarks/memory_vs_nt.py                       # CPU: peak RSS above the pre-update level
    python benchmarks/memory_vs_nt.py --n-t 1 2 4 8 16 32   # (default list)
    python benchmarks/memory_vs_nt.py --shape llada-8b --layers 1 --recompute none full
                                    # LLaDA-8B widths (d_model 4096, 32 heads, mlp 12288, vocab 126464)

BGPO's loss is a sum of one term per (response, MC sample): the schedule runs one canvas per
micro-batch and memory stays flat in n_t. VRPO-OL's exp(mean_j d_j) couples the n_t samples, so a
response's n_t canvases share one graph and memory grows with n_t. Each measurement runs in a fresh
process after one warm-up update at n_t = 1 (weights, gradient buffers and allocator pools in place).
On GPU the peak is torch.cuda.max_memory_allocated; on CPU it is the peak RSS (VmHWM, reset through
/proc/self/clear_refs) minus the RSS just before the measured update.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import torch


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


class PeakMeter:
    """Peak memory (MiB) of a region above its starting level."""

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _rss_kib("VmHWM") * 1024
        self.peak_mib = (peak - self.start) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-t", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--objectives", nargs="+", default=["bgpo", "vrpo_ol"])
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--gen-len", type=int, default=256)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument(
        "--shape", choices=["custom", "llada-8b"], default="custom",
        help="llada-8b: LLaDA-8B's widths and vocabulary (d_model/vocab flags ignored; --layers kept)",
    )  # fmt: skip
    p.add_argument(
        "--recompute", nargs="+", choices=["none", "full", "selective"], default=["none"],
        help="activation recomputation settings to measure (full: uniform, every sublayer)",
    )  # fmt: skip
    p.add_argument("--logprob-chunk-size", type=int, default=1024)
    p.add_argument("--single", nargs=3, metavar=("OBJECTIVE", "N_T", "RECOMPUTE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        measure(args, args.single[0], int(args.single[1]), args.single[2])
        return
    device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (peak RSS)"
    cfg = model_config(args)
    print(
        f"# one response, prompt {args.prompt_len} + gen {args.gen_len} tokens, d_model {cfg.d_model}, "
        f"{cfg.n_layers} layers, mlp {cfg.mlp_hidden_size}, vocab {cfg.vocab_size}, {args.dtype}, "
        f"log-prob chunk {args.logprob_chunk_size} rows, {device}"
    )
    header = ("objective", "n_t", "recompute", "micro-batches", "canvases/mb", "peak MiB", "time s")
    print("{:<10} {:>4} {:>9} {:>13} {:>11} {:>9} {:>7}".format(*header))
    forwarded = sys.argv[1:]
    for recompute in args.recompute:
        for name in args.objectives:
            for n_t in args.n_t:
                out = subprocess.run(
                    [sys.executable, __file__, *forwarded, "--single", name, str(n_t), recompute],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                rows = [line for line in out.stdout.splitlines() if line.startswith(name)]
                if out.returncode != 0 or not rows:
                    oom = "out of memory" in out.stderr.lower() or out.returncode in (-9, 137)
                    if oom:  # the paper's Fig. 1 point: VRPO-OL runs out of memory first
                        print(f"{name:<10} {n_t:>4} {recompute:>9} {'':>13} {'':>11} {'OOM':>9} {'':>7}")
                        continue
                    raise SystemExit(f"measurement {name} n_t={n_t} failed:\n{out.stderr[-3000:]}")
                print(rows[-1], flush=True)


def model_config(args: argparse.Namespace):
    """The measured model: LLaDA-8B's widths with ``--layers`` layers, or the custom flags."""
    from megatron_bgpo.models.llada import get_preset

    if args.shape == "llada-8b":
        return get_preset("llada-8b").replace(n_layers=args.layers)
    from megatron_bgpo.models.llada import LLaDAConfig

    return LLaDAConfig(
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.d_model // 64,
        n_kv_heads=args.d_model // 64,
        mlp_hidden_size=args.d_model * 8 // 3 // 64 * 64,
        vocab_size=args.vocab,
        embedding_size=args.vocab,
        mask_token_id=args.vocab - 1,
        eos_token_id=args.vocab - 2,
        pad_token_id=args.vocab - 2,
    )


RECOMPUTE = {
    "none": {},
    "full": {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
    "selective": {"recompute_granularity": "selective"},
}


def measure(args: argparse.Namespace, name: str, n_t: int, recompute: str) -> None:
    from megatron_bgpo.diffusion.masking import MaskingSpec
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
    from megatron_bgpo.rl.objectives import ObjectiveConfig, get_objective
    from megatron_bgpo.rl.rollout import RolloutBatch
    from megatron_bgpo.training.policy import Policy

    parallel = ParallelConfig(1, 1)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(0)
    cfg = model_config(args)
    vocab = cfg.vocab_size
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    policy = Policy.build(cfg, parallel, groups, dtype, ddp=True, transformer_overrides=RECOMPUTE[recompute])
    policy.logprob_chunk_rows = args.logprob_chunk_size
    gen = torch.Generator().manual_seed(0)
    batch = RolloutBatch(
        prompt_ids=torch.randint(0, vocab - 2, (1, args.prompt_len), generator=gen),
        prompt_mask=torch.ones(1, args.prompt_len, dtype=torch.bool),
        response_ids=torch.randint(0, vocab - 2, (1, args.gen_len), generator=gen),
        advantages=torch.tensor([1.0], dtype=torch.float64),
        response_uid=torch.arange(1),
        loss_weight=torch.ones(1, dtype=torch.float64),
    )
    objective = get_objective(name)

    def update(n: int):
        packing = PackingConfig(n, 1, MaskingSpec(eos_id=cfg.eos_token_id), mask_id=cfg.mask_token_id)
        mbs = build_microbatches(batch, objective, packing)
        policy.gradients(mbs, objective, ObjectiveConfig())
        return mbs

    update(1)  # warm-up
    t0 = time.perf_counter()
    with PeakMeter() as meter:
        mbs = update(n_t)
    dt = time.perf_counter() - t0
    print(
        f"{name:<10} {n_t:>4} {recompute:>9} {len(mbs):>13} {mbs[0].num_canvases:>11} "
        f"{meter.peak_mib:>9.0f} {dt:>7.2f}"
    )


if __name__ == "__main__":
    main()
