"""Peak memory of the log-prob computation at LLaDA-8B's vocabulary: full logits vs loss positions only.

    python benchmarks/logprob_memory.py                     # CPU: 1 layer of LLaDA-8B width
    python benchmarks/logprob_memory.py --canvases 8 --layers 2

One forward + backward of a weighted sum of target log-probs over ``--canvases`` canvases of
``--prompt-len + --gen-len`` tokens, of which ``--masked`` of the generated tokens are loss positions
(an MC canvas at t ~ 0.5). Settings:

- ``full logits``: the model's output layer on every position ([B, T, V] fp32 logits, kept for backward),
  then the selected positions' log-probs (the path before `llada_selected_logprobs`);
- ``selected, chunk N``: `llada_selected_logprobs` (the policy update's path): the output layer only on the
  loss positions' hidden states, N rows at a time, each chunk recomputed in backward (0: all selected
  rows at once, no recomputation).

Each setting runs in a fresh process after a warm-up pass (weights, gradient buffers in place); the peak is
above the level just before the measured pass (memory_vs_nt.PeakMeter: CUDA allocator or CPU peak RSS).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from memory_vs_nt import PeakMeter

SETTINGS = {
    "full logits": None,
    "selected, chunk 0": 0,
    "selected, chunk 1024": 1024,
    "selected, chunk 256": 256,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--canvases", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--gen-len", type=int, default=224)
    p.add_argument("--masked", type=float, default=0.5, help="fraction of generated tokens that are masked")
    p.add_argument("--tp", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single is not None:
        measure(args, args.single)
        return
    device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (peak RSS)"
    rows = int(args.canvases * args.gen_len * args.masked)
    print(
        f"# LLaDA-8B widths, {args.layers} layer(s), vocab 126464, fp32; {args.canvases} canvases x "
        f"({args.prompt_len} + {args.gen_len}) tokens, {rows} loss positions; {device}"
    )
    print(f"{'setting':<22} {'peak MiB':>9} {'time s':>7}")
    for name in SETTINGS:
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--single", name],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith(name)]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"measurement {name!r} failed:\n{out.stderr[-3000:]}")
        print(lines[-1], flush=True)


def measure(args: argparse.Namespace, name: str) -> None:
    from megatron_bgpo.models.llada import get_preset, llada_forward
    from megatron_bgpo.models.llada.model import llada_selected_logprobs
    from megatron_bgpo.models.logprobs import selected_token_logprobs
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.parallel.ddp import zero_grads
    from megatron_bgpo.training.policy import Policy

    parallel = ParallelConfig(args.tp, 1)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(0)
    cfg = get_preset("llada-8b").replace(n_layers=args.layers)
    policy = Policy.build(cfg, parallel, groups, torch.float32, ddp=True)
    model = policy.model[0]
    gen = torch.Generator().manual_seed(0)
    length = args.prompt_len + args.gen_len
    tokens = torch.randint(0, cfg.vocab_size - 2, (args.canvases, length), generator=gen)
    positions = torch.zeros(args.canvases, length, dtype=torch.bool)
    positions[:, args.prompt_len :] = torch.rand(args.canvases, args.gen_len, generator=gen) < args.masked
    tokens[positions] = cfg.mask_token_id
    targets = torch.randint(0, cfg.vocab_size - 2, tokens.shape, generator=gen)
    weights = torch.randn(tokens.shape, generator=gen)
    chunk_rows = SETTINGS[name]

    def one_pass() -> None:
        zero_grads(policy.model)
        if chunk_rows is None:
            logits = llada_forward(model, tokens)
            lp = selected_token_logprobs(logits, targets, positions, groups.tp)
        else:
            lp = llada_selected_logprobs(model, tokens, None, targets, positions, groups.tp, chunk_rows)
        (lp * weights).sum().backward()

    one_pass()  # warm-up
    t0 = time.perf_counter()
    with PeakMeter() as meter:
        one_pass()
    print(f"{name:<22} {meter.peak_mib:>9.0f} {time.perf_counter() - t0:>7.2f}")


if __name__ == "__main__":
    main()
