"""Smoke run: LLaDA on megatron-core at a given TP/PP vs the plain-PyTorch reference forward.

    torchrun --nproc-per-node 2 tools/llada_smoke.py --tp 2 --pp 1

Builds a tiny LLaDA (or any preset / HF config.json), loads the same random HF-layout weights on every
rank through the declarative mapping, runs a left-padded batch through the pipeline schedule
(forward only), and prints the logit error against the reference plus the time each phase took.
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()

import torch  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tp", "--tensor-model-parallel-size", dest="tp", type=int, default=1)
    p.add_argument("--pp", "--pipeline-model-parallel-size", dest="pp", type=int, default=1)
    p.add_argument("--model", default="tiny", help="preset name or path to an HF config.json / folder")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    from megatron_bgpo.checkpointing.llada_mapping import dict_reader, load_hf_into_model
    from megatron_bgpo.models.llada import PRESETS, LLaDAConfig, get_preset, llada_forward
    from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
    from megatron_bgpo.parallel import (
        ParallelConfig,
        destroy_model_parallel,
        init_distributed,
        parallel_groups,
        set_seed,
    )
    from megatron_bgpo.parallel.schedule import run_microbatches
    from megatron_bgpo.training.policy import Policy

    t_import = time.perf_counter() - T0
    env = init_distributed()
    parallel = ParallelConfig(args.tp, args.pp)
    groups = parallel_groups(parallel, env)
    set_seed(args.seed)
    cfg = get_preset(args.model) if args.model in PRESETS else LLaDAConfig.from_json(args.model)
    t_init = time.perf_counter() - T0 - t_import

    chunks = Policy.build(cfg, parallel, groups, torch.float32).model
    weights = random_hf_weights(cfg, seed=args.seed)
    for chunk in chunks:
        load_hf_into_model(chunk, cfg, dict_reader(weights), groups.tp_rank, args.tp)
    gen = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=gen)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for row in range(args.batch):
        mask[row, : row % max(1, args.seq // 4)] = False  # left padding of different lengths

    def step(batch, model):
        out = llada_forward(model, *batch)
        return out, lambda logits: (torch.zeros(()), {"logits": logits.detach()})

    t1 = time.perf_counter()
    with torch.no_grad():
        outputs = run_microbatches(
            chunks,
            step,
            [(tokens, mask)],
            seq_length=args.seq,
            micro_batch_size=args.batch,
            forward_only=True,
        )
    t_forward = time.perf_counter() - t1
    if groups.is_last_stage:
        v = cfg.embedding_size // args.tp
        r = groups.tp_rank
        ref = reference_forward(weights, cfg, tokens, mask)[..., r * v : (r + 1) * v]
        got = outputs[0]["logits"]
        err = ((got - ref)[mask].abs().max() / ref.abs().max()).item()
        status = "OK" if err < 1e-5 else "MISMATCH"
        print(
            f"[rank {env.rank}] tp={args.tp} pp={args.pp} dp={parallel.data_parallel_size(env.world_size)} "
            f"model={args.model} logits {tuple(got.shape)} rel_err_vs_reference={err:.2e} {status} | "
            f"import {t_import:.1f}s init {t_init:.1f}s forward {t_forward * 1e3:.0f}ms",
            flush=True,
        )
        if status != "OK":
            raise SystemExit(1)
    torch.distributed.barrier()
    destroy_model_parallel()


if __name__ == "__main__":
    main()
