"""Convert LLaDA-family checkpoints (LLaDA-8B, LLaDA-1.5, iLLaDA; docs/models.md) between the HF layout and
Megatron ``torch_dist`` checkpoints.

    # HF -> Megatron at TP=2, PP=2 (one process per TP x PP rank; each reads only its slices)
    torchrun --nproc-per-node 4 tools/convert_hf.py import \\
        --hf-dir LLaDA-8B-Instruct --out ckpt/llada-8b-tp2pp2 --tp 2 --pp 2 --dtype bf16 --verify

    # Megatron (any TP/PP it was saved at) -> HF, one process, shard by shard
    python tools/convert_hf.py export --megatron-dir ckpt/llada-8b-tp2pp2 --out llada-8b-hf --shard-size 5GB

Each rank prints one JSON line with its report (tensors, seconds, peak RSS, verification results).
Errors exit with status 2 and a one-line message; nothing is left at --out.
"""

from __future__ import annotations

import argparse
import json
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="HF folder -> Megatron torch_dist checkpoint (run under torchrun)")
    imp.add_argument(
        "--hf-dir",
        required=True,
        help="HF folder of a supported architecture (config.json, safetensors + index)",
    )
    imp.add_argument("--out", required=True, help="Megatron checkpoint folder to create")
    imp.add_argument(
        "--tp", "--tensor-model-parallel-size", dest="tp", type=int, default=1, help="world size = tp * pp"
    )
    imp.add_argument("--pp", "--pipeline-model-parallel-size", dest="pp", type=int, default=1)
    imp.add_argument(
        "--dtype", choices=("bf16", "fp16", "fp32"), help="parameter dtype (default: the HF one)"
    )
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imp.add_argument(
        "--verify",
        action="store_true",
        help="reload and compare every tensor; logits vs the reference forward (4 B/param on one rank)",
    )
    exp = sub.add_parser("export", help="Megatron checkpoint -> HF folder (single process)")
    exp.add_argument("--megatron-dir", required=True, help="checkpoint root or iteration folder")
    exp.add_argument("--out", required=True, help="HF folder to create")
    exp.add_argument("--shard-size", default="5GB", help="max safetensors shard size (default 5GB)")
    exp.add_argument(
        "--dtype", choices=("bf16", "fp16", "fp32"), help="output dtype (default: the checkpoint's)"
    )
    exp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    exp.add_argument("--verify", action="store_true", help="re-read and compare every written tensor")
    exp.add_argument(
        "--hf-files-from",
        help="HF folder or converted checkpoint to take modeling code / generation config from "
        "when the checkpoint has none (e.g. a training run)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from megatron_bgpo.checkpointing.convert import export_hf, import_hf
    from megatron_bgpo.checkpointing.hf_io import CheckpointError, dtype_from_name

    dtype = dtype_from_name(args.dtype) if args.dtype else None
    try:
        if args.command == "import":
            from megatron_bgpo.parallel import init_distributed

            init_distributed()
            report = import_hf(
                args.hf_dir,
                args.out,
                args.tp,
                args.pp,
                dtype=dtype,
                overwrite=args.overwrite,
                verify=args.verify,
            )
        else:
            report = export_hf(
                args.megatron_dir,
                args.out,
                shard_size=args.shard_size,
                dtype=dtype,
                overwrite=args.overwrite,
                verify=args.verify,
                hf_files_from=args.hf_files_from,
            )
    except CheckpointError as exc:
        print(f"convert_hf {args.command}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    # One write per line: ranks share stdout, and print() may write the text and the newline separately.
    sys.stdout.write(json.dumps({"command": args.command, **report}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    sys.exit(code)
