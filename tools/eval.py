"""Evaluate a LLaDA Megatron checkpoint on the paper's benchmarks and print Table 1's layout.

    torchrun --nproc-per-node 8 tools/eval.py --load ckpt/llada-8b --tp 8 \\
        --task math500=../shared/data/math500_test.jsonl --task gsm8k=../shared/data/gsm8k_test.jsonl \\
        --gen-length 512 --diffusion-steps 512 --block-length 32 --output eval/llada.jsonl

Paper settings (spec §2, §5.6): block 32, greedy (temperature 0), low-confidence remasking, the
``<reasoning>`` prefill after the chat template. ``--task NAME=PATH`` may repeat; ``--limit`` and
``--subset-seed`` pick a subset. Every generation and its score go to ``--output`` (JSONL). Data-parallel
ranks split the prompts; TP/PP ranks share them. An HF folder is converted first with convert_hf.py.
"""

from __future__ import annotations

import argparse

from megatron_bgpo.cli import renamed_flag
from megatron_bgpo.training.config import GenerationArgs, add_fast_decoding_flags, fast_decoding_args


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--load", required=True, help="Megatron checkpoint folder (config.json and tokenizer/ beside)"
    )
    p.add_argument("--tokenizer")
    p.add_argument("--task", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--tp", "--tensor-model-parallel-size", dest="tp", type=int, default=1)
    p.add_argument("--pp", "--pipeline-model-parallel-size", dest="pp", type=int, default=1)
    p.add_argument("--gen-length", type=int, default=256)
    p.add_argument(
        "--diffusion-steps", type=int, default=None, help="default: gen_length / 2 (d1's evaluation)"
    )
    renamed_flag(p, "--steps", "--diffusion-steps")
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generate call per DP rank")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--subset-seed", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-prefill", action="store_true", help="generate without the <reasoning> prefill")
    p.add_argument("--output", default=None, help="JSONL of every generation and its score")
    p.add_argument("--model-name", default="model")
    p.add_argument("--params-dtype", default="bf16", choices=["bf16", "fp32"])
    add_fast_decoding_flags(p)
    args = p.parse_args()
    tasks = []
    for item in args.task:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise SystemExit(f"--task expects NAME=PATH, got {item!r}")
        tasks.append((name, path))

    import torch

    from megatron_bgpo.diffusion.sampler import Prompts
    from megatron_bgpo.models.llada.inference import decode_outputs
    from megatron_bgpo.parallel import ParallelConfig, destroy_model_parallel
    from megatron_bgpo.tasks import get_task
    from megatron_bgpo.tasks.evaluation import evaluate_generations, select_examples
    from megatron_bgpo.tokenizer import REASONING_PREFILL
    from megatron_bgpo.training.policy import load_for_inference

    tokenizer, policy = load_for_inference(
        args.load, args.tokenizer, ParallelConfig(args.tp, args.pp), args.params_dtype, args.seed
    )
    sampler = GenerationArgs(
        gen_length=args.gen_length,
        diffusion_steps=args.diffusion_steps or args.gen_length // 2,
        block_length=args.block_length,
        temperature=0.0,
        **fast_decoding_args(args),
    ).sampler(tokenizer)
    prefill = "" if args.no_prefill else REASONING_PREFILL
    dp_rank, dp_size = policy.groups.dp_rank, policy.groups.dp_size
    runs = []
    for name, path in tasks:
        task = get_task(name)
        examples = select_examples(task.load(path).examples, args.limit, args.subset_seed)
        mine = examples[dp_rank::dp_size]
        completions: list[str] = []
        for start in range(0, max(len(mine), 1), args.batch_size):
            batch = mine[start : start + args.batch_size] or examples[:1]  # every rank joins each call
            ids = [tokenizer.encode(task.prompt_text(ex, prefill=not args.no_prefill)) for ex in batch]
            out = policy.generate(Prompts.from_lists(ids, pad_id=tokenizer.pad_id), sampler, seed=args.seed)
            texts = decode_outputs(tokenizer, out)
            completions += texts[: len(mine[start : start + args.batch_size])]
        gathered: list = [None] * dp_size
        torch.distributed.all_gather_object(gathered, completions, group=policy.groups.dp)
        ordered = [None] * len(examples)
        for rank, part in enumerate(gathered):
            ordered[rank::dp_size] = part
        runs.append((task, examples, ordered))
    if torch.distributed.get_rank() == 0:
        evaluations, table = evaluate_generations(
            runs, model_name=args.model_name, jsonl_path=args.output, prefill=prefill
        )
        for e in evaluations:
            print(f"{e.task}: n={e.n} accuracy={100 * e.accuracy:.1f} mean_reward={e.mean_reward:.3f}")
        print(table, flush=True)
    destroy_model_parallel()


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
