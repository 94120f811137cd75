"""Sampler speed: plain LLaDA decoding vs the fast-decoding switches, on a tiny model.

Prints a markdown table: NFE (denoiser calls), wall time, generated tokens/s, token agreement with the
plain sampler and task accuracy. The default model is a small plain-torch bidirectional transformer
(megatron_bgpo.diffusion.toy) trained for a few seconds with the masked-diffusion loss on a synthetic
task (response = a copy of the prompt digits, then EOS padding), so its confidences are meaningful.

    .venv/bin/python benchmarks/sampler_speed.py                      # toy, CPU, ~1 min
    .venv/bin/python benchmarks/sampler_speed.py --denoiser my.module:factory --device cuda

``--denoiser MODULE:FACTORY`` swaps in another model: ``FACTORY(args) -> BenchTask`` (e.g. the
Megatron LLaDA model wrapped as a denoiser, with tokenized prompts); ``answers`` may be None.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from dataclasses import dataclass

import torch

from megatron_bgpo.diffusion.elbo import build_masked_batch, elbo_terms
from megatron_bgpo.diffusion.masking import MaskingSpec, counted_positions, item_index, mc_seeds, sample_masks
from megatron_bgpo.diffusion.sampler import Denoiser, Prompts, SamplerConfig, generate
from megatron_bgpo.diffusion.toy import ToyDenoiser
from megatron_bgpo.diffusion.vocab import token_logprobs


@dataclass
class BenchTask:
    """denoiser + prompts; answers [B, gen_length] expected tokens (None: no accuracy column)."""

    denoiser: Denoiser
    prompts: Prompts
    mask_id: int
    eos_id: int
    answers: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------
# built-in toy task: copy the prompt digits, then EOS padding

PAD, SEP, EOS, MASK, N_DIGITS = 0, 11, 12, 13, 10  # digits are ids 1..10
VOCAB = 14


def _copy_batch(n: int, gen_length: int, gen: torch.Generator) -> tuple[Prompts, torch.Tensor]:
    seqs, answers = [], torch.full((n, gen_length), EOS)
    for i in range(n):
        k = int(torch.randint(3, 9, (1,), generator=gen))
        digits = torch.randint(1, N_DIGITS + 1, (k,), generator=gen).tolist()
        seqs.append([*digits, SEP])
        answers[i, :k] = torch.tensor(digits)
    return Prompts.from_lists(seqs, PAD), answers


def toy_task(args: argparse.Namespace) -> BenchTask:
    device = torch.device(args.device)
    model = ToyDenoiser(VOCAB, d_model=64, n_layers=2, n_heads=4, seed=0).to(device)
    eval_prompts, answers = _copy_batch(args.batch, args.gen_length, torch.Generator().manual_seed(1))
    if args.checkpoint and os.path.exists(args.checkpoint):
        model.load_state_dict(torch.load(args.checkpoint, map_location=device))
        return BenchTask(model.eval(), eval_prompts.to(device), MASK, EOS, answers.to(device))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    spec = MaskingSpec(mode="continuous", eps=1e-3, stratified=False)
    t0 = time.perf_counter()
    for step in range(args.train_steps):  # LLaDA SFT loss: -(ELBO term) / L, EOS padding included
        pr, ans = _copy_batch(64, args.gen_length, gen)
        pr, ans = pr.to(device), ans.to(device)
        resp, j = item_index(len(ans), 1, device)
        smp = sample_masks(counted_positions(ans, spec), mc_seeds(step, resp, j), j, 1, spec)
        b = build_masked_batch(pr.input_ids, pr.attention_mask, pr.position_ids, ans, smp, MASK)
        lp = token_logprobs(model(b.tokens, b.attention_mask, b.position_ids), b.targets)
        loss = -elbo_terms(lp, b.loss_mask, b.weight).mean() / args.gen_length
        opt.zero_grad()
        loss.backward()
        opt.step()
    took = time.perf_counter() - t0
    print(f"trained toy for {args.train_steps} steps in {took:.1f}s, last loss {loss.item():.3f}")
    if args.checkpoint:
        torch.save(model.state_dict(), args.checkpoint)
    return BenchTask(model.eval(), eval_prompts.to(device), MASK, EOS, answers.to(device))


# ---------------------------------------------------------------------------------------------


def _load_factory(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--denoiser", default=None, help="MODULE:FACTORY returning a BenchTask (default: toy)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (best is reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--checkpoint", default=None, help="toy weights: loaded if present, else saved here")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)

    task = _load_factory(args.denoiser)(args) if args.denoiser else toy_task(args)
    base = SamplerConfig(
        gen_length=args.gen_length,
        steps=args.steps,
        block_length=args.block_length,
        temperature=args.temperature,
        mask_id=task.mask_id,
        eos_id=task.eos_id,
    )
    rows = [
        ("plain", base),
        ("threshold 0.9", base.with_(threshold=0.9)),
        ("threshold 0.7", base.with_(threshold=0.7)),
        ("threshold 0.5", base.with_(threshold=0.5)),
        ("fill_after_eos", base.with_(fill_after_eos=True)),
        ("threshold 0.9 + fill", base.with_(threshold=0.9, fill_after_eos=True)),
    ]
    if hasattr(task.denoiser, "prefill"):
        rows += [
            ("prefix_cache", base.with_(prefix_cache=True)),
            ("prefix_cache + threshold 0.9", base.with_(prefix_cache=True, threshold=0.9)),
        ]

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    n_tok = task.prompts.input_ids.shape[0] * args.gen_length
    print(
        f"\nbatch {task.prompts.input_ids.shape[0]}, gen_length {args.gen_length}, "
        f"block {args.block_length}, steps {args.steps}, temperature {args.temperature}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}\n"
    )
    header = "| decoding | NFE | wall s | tokens/s | agreement w/ plain | accuracy |"
    print(header + "\n|---|---:|---:|---:|---:|---:|")
    plain_tokens = None
    for name, cfg in rows:
        best = float("inf")
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            out = generate(task.denoiser, task.prompts, cfg, seed=0)
            sync()
            best = min(best, time.perf_counter() - t0)
        if plain_tokens is None:
            plain_tokens = out.tokens
        agree = (out.tokens == plain_tokens).float().mean().item()
        acc = "-"
        if task.answers is not None:
            acc = f"{(out.tokens == task.answers).all(1).float().mean().item():.3f}"
        print(f"| {name} | {out.nfe} | {best:.3f} | {n_tok / best:,.0f} | {agree:.3f} | {acc} |")


if __name__ == "__main__":
    main()
