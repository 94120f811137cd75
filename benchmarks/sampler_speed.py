"""Sampler speed: plain LLaDA decoding vs the fast-decoding switches, on a tiny model.

Prints a markdown table: NFE (denoiser calls), wall time, generated tokens/s, token agreement with the
plain sampler and task accuracy. Both built-in models are trained for a short while with the
masked-diffusion loss on a synthetic task (response = a copy of the prompt digits, then EOS padding),
so their confidences are meaningful:

- ``--model toy`` (default): a small plain-torch bidirectional transformer (megatron_bgpo.diffusion.toy);
- ``--model megatron``: the LLaDA Megatron-Core model ("tiny" preset shape, a 14-id vocabulary padded
  to 16 rows) driven through ``MegatronDenoiser`` (logits_range, prefill/extend), one process, TP1 PP1.

    .venv/bin/python benchmarks/sampler_speed.py                      # toy, CPU, ~1 min
    .venv/bin/python benchmarks/sampler_speed.py --model megatron --threads 1
    .venv/bin/python benchmarks/sampler_speed.py --denoiser my.module:factory --device cuda

``--denoiser MODULE:FACTORY`` swaps in another model: ``FACTORY(args) -> BenchTask`` (e.g. the
Megatron LLaDA model wrapped as a denoiser, with tokenized prompts); ``answers`` may be None.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from megatron_bgpo.cli import renamed_flag
from megatron_bgpo.diffusion.elbo import build_masked_batch, elbo_terms
from megatron_bgpo.diffusion.masking import MaskingSpec, counted_positions, item_index, mc_seeds, sample_masks
from megatron_bgpo.diffusion.sampler import Denoiser, PipelineComm, Prompts, SamplerConfig, generate
from megatron_bgpo.diffusion.toy import ToyDenoiser
from megatron_bgpo.diffusion.vocab import VocabShard, token_logprobs


@dataclass
class BenchTask:
    """denoiser + prompts; answers [B, gen_length] expected tokens (None: no accuracy column);
    vocab / pipeline: the denoiser's layout for ``generate`` (None: one full-vocab process)."""

    denoiser: Denoiser
    prompts: Prompts
    mask_id: int
    eos_id: int
    answers: torch.Tensor | None = None
    vocab: VocabShard | None = None
    pipeline: PipelineComm | None = None


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


LogitsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _train_copy(model: LogitsFn, params: Iterable[torch.nn.Parameter], args: argparse.Namespace) -> None:
    """LLaDA SFT loss on the copy task: -(ELBO term) / L, EOS padding included."""
    device = torch.device(args.device)
    opt = torch.optim.Adam(list(params), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    spec = MaskingSpec(mode="continuous", eps=1e-3, stratified=False)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for step in range(args.train_steps):
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
    print(f"trained for {args.train_steps} steps in {took:.1f}s, last loss {loss.item():.3f}")


def _load_or_train(module: torch.nn.Module, model: LogitsFn, args: argparse.Namespace) -> None:
    if args.checkpoint and os.path.exists(args.checkpoint):
        module.load_state_dict(torch.load(args.checkpoint, map_location=args.device))
        return
    module.train()
    _train_copy(model, module.parameters(), args)
    if args.checkpoint:
        torch.save(module.state_dict(), args.checkpoint)


def _eval_batch(args: argparse.Namespace) -> tuple[Prompts, torch.Tensor]:
    prompts, answers = _copy_batch(args.batch, args.gen_length, torch.Generator().manual_seed(1))
    return prompts.to(torch.device(args.device)), answers.to(torch.device(args.device))


def toy_task(args: argparse.Namespace) -> BenchTask:
    model = ToyDenoiser(VOCAB, d_model=64, n_layers=2, n_heads=4, seed=0).to(torch.device(args.device))
    _load_or_train(model, model, args)
    prompts, answers = _eval_batch(args)
    return BenchTask(model.eval(), prompts, MASK, EOS, answers)


def _single_process_env() -> None:
    """torch.distributed env for one process (a free port unless MASTER_PORT is set)."""
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])


def megatron_task(args: argparse.Namespace) -> BenchTask:
    """The LLaDA Megatron-Core model (tiny shape, copy-task vocabulary) on one process, TP1 PP1."""
    from megatron_bgpo.models.llada import get_preset, llada_forward
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.training.policy import Policy

    _single_process_env()
    parallel = ParallelConfig()
    groups = parallel_groups(parallel, init_distributed())
    set_seed(0)
    cfg = get_preset("tiny").replace(
        vocab_size=VOCAB, embedding_size=16, mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD
    )
    policy = Policy.build(cfg, parallel, groups, torch.float32)
    chunk = policy.model[0].to(torch.device(args.device))
    _load_or_train(chunk, lambda t, a, p: llada_forward(chunk, t, a)[..., :VOCAB], args)
    den = policy.denoiser  # over the same (now trained) chunk
    prompts, answers = _eval_batch(args)
    return BenchTask(den, prompts, MASK, EOS, answers, den.vocab_shard(), den.pipeline_comm())


MODELS = {"toy": toy_task, "megatron": megatron_task}


# ---------------------------------------------------------------------------------------------


def _load_factory(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="toy", help="built-in model")
    ap.add_argument(
        "--denoiser", default=None, help="MODULE:FACTORY returning a BenchTask (overrides --model)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=8)
    ap.add_argument("--diffusion-steps", type=int, default=32)
    renamed_flag(ap, "--steps", "--diffusion-steps")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (best is reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--checkpoint", default=None, help="model weights: loaded if present, else saved here")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)

    task = _load_factory(args.denoiser)(args) if args.denoiser else MODELS[args.model](args)
    base = SamplerConfig(
        gen_length=args.gen_length,
        steps=args.diffusion_steps,
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
        f"block {args.block_length}, steps {args.diffusion_steps}, temperature {args.temperature}, "
        f"model {args.denoiser or args.model}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    header = "| decoding | NFE | wall s | tokens/s | agreement w/ plain | accuracy |"
    print(header + "\n|---|---:|---:|---:|---:|---:|")
    plain_tokens = None
    for name, cfg in rows:
        best = float("inf")
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            out = generate(task.denoiser, task.prompts, cfg, seed=0, vocab=task.vocab, pipeline=task.pipeline)
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
