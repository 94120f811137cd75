"""Generate text with a LLaDA model from a Megatron checkpoint (any TP/PP), with LLaDA's chat template.

    torchrun --nproc-per-node 2 tools/generate.py --load runs/tiny/bgpo --tp 2 --prompt "Solve ..."
    torchrun --nproc-per-node 8 tools/generate.py --load ckpt/llada-8b --tp 8 --prompts-file q.jsonl \\
        --gen-length 256 --diffusion-steps 128 --block-length 32

An HF folder is converted first with ``tools/convert_hf.py import``. ``--prompts-file`` is JSONL with a
"prompt" (user message) or "messages" (chat) field per line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from megatron_bgpo.cli import renamed_flag
from megatron_bgpo.training.config import GenerationArgs, add_fast_decoding_flags, fast_decoding_args


def read_prompts(args: argparse.Namespace) -> list[list[dict[str, str]]]:
    if args.prompt is not None:
        return [[{"role": "user", "content": args.prompt}]]
    conversations = []
    for n, line in enumerate(Path(args.prompts_file).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = (
                record["messages"]
                if "messages" in record
                else [{"role": "user", "content": record["prompt"]}]
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SystemExit(
                f"{args.prompts_file}:{n}: expected JSON with 'prompt' or 'messages' ({exc})"
            ) from exc
        conversations.append(messages)
    if not conversations:
        raise SystemExit(f"{args.prompts_file}: no prompts")
    return conversations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--load", required=True, help="Megatron checkpoint folder (with config.json and tokenizer/)"
    )
    p.add_argument("--tokenizer", help="tokenizer folder or .model (default: the one stored with --load)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt")
    src.add_argument("--prompts-file")
    p.add_argument("--tp", "--tensor-model-parallel-size", dest="tp", type=int, default=1)
    p.add_argument("--pp", "--pipeline-model-parallel-size", dest="pp", type=int, default=1)
    p.add_argument("--gen-length", type=int, default=128)
    p.add_argument("--diffusion-steps", type=int, default=128)
    renamed_flag(p, "--steps", "--diffusion-steps")
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--cfg-scale", type=float, default=0.0)
    p.add_argument("--remasking", default="low_confidence", choices=["low_confidence", "random"])
    add_fast_decoding_flags(p)
    p.add_argument(
        "--prefill", default="", help='text appended after the assistant header, e.g. "<reasoning>"'
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params-dtype", default="bf16", choices=["bf16", "fp32"])
    args = p.parse_args()
    conversations = read_prompts(args)

    import torch

    from megatron_bgpo.diffusion.sampler import Prompts
    from megatron_bgpo.models.llada.inference import decode_outputs
    from megatron_bgpo.parallel import ParallelConfig, destroy_model_parallel
    from megatron_bgpo.training.policy import load_for_inference

    tokenizer, policy = load_for_inference(
        args.load, args.tokenizer, ParallelConfig(args.tp, args.pp), args.params_dtype, args.seed
    )
    texts = [tokenizer.apply_chat_template(m, prefill=args.prefill) for m in conversations]
    prompts = Prompts.from_lists([tokenizer.encode(t) for t in texts], pad_id=tokenizer.pad_id)
    sampler = GenerationArgs(
        gen_length=args.gen_length,
        diffusion_steps=args.diffusion_steps,
        block_length=args.block_length,
        temperature=args.temperature,
        cfg_scale=args.cfg_scale,
        remasking=args.remasking,
        **fast_decoding_args(args),
    ).sampler(tokenizer)
    out = policy.generate(prompts, sampler, seed=args.seed)
    if torch.distributed.get_rank() == 0:
        for conv, text, n in zip(conversations, decode_outputs(tokenizer, out), out.lengths, strict=True):
            print(f"### {conv[-1]['content'][:200]}")
            print(args.prefill + text)
            print(f"[{int(n)} tokens, {out.nfe} denoiser calls]", flush=True)
    destroy_model_parallel()


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
