"""Does the 1/t ELBO weight slow masked-diffusion SFT at small batch? A plain-PyTorch check, no Megatron.

    .venv/bin/python experiments/sft_weighting.py --base runs/tiny/base --train-steps 600

Trains the tiny run's config (``--base``: config.json, tokenizer/, train.csv, eval.csv from
``python -m megatron_bgpo.training.tiny``) twice from the same initial weights with the plain-PyTorch
reference forward (``models/llada/reference.py``) and torch AdamW (lr 3e-3 with the tiny run's warm-up
and cosine, beta2 0.95, clip 1.0, batch 32): once with LLaDA's loss (masked-token log-probs x 1/t,
``elbo_sft``) and once without the weight (``masked_sft``). Masks come from the project's
``diffusion.masking.sample_masks`` (continuous, eps 1e-3). Every ``--report`` steps it prints, on 128
held-out puzzles with the answer canvas fully masked, the argmax accuracy on the given cells (copying)
and on the empty ones (solving), as ``experiments/prompt_reliance.py`` does for Megatron checkpoints.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from prompt_reliance import grid_slice

from megatron_bgpo.diffusion.masking import MaskingSpec, mc_seeds, sample_masks
from megatron_bgpo.models.llada import LLaDAConfig
from megatron_bgpo.models.llada.reference import random_hf_weights, reference_forward
from megatron_bgpo.tasks import get_task
from megatron_bgpo.tokenizer import load_tokenizer
from megatron_bgpo.training.sft import reference_canvas


def encode(tokenizer, task, examples, gen_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompts [N, P], EOS-padded reference canvases [N, gen_length]); the tiny prompts share one length."""
    prompts = [tokenizer.encode(task.prompt_text(ex)) for ex in examples]
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts differ in length; this benchmark expects the tiny run's sudoku_brief data")
    return torch.tensor(prompts), reference_canvas(tokenizer, task, examples, gen_length)


@torch.no_grad()
def copy_and_solve(weights, cfg, tokenizer, prompts, canvases, given, grid) -> tuple[float, float]:
    """Argmax accuracy on given and on empty grid cells with the whole answer canvas masked."""
    x = torch.cat([prompts, torch.full_like(canvases, tokenizer.mask_id)], 1)
    logits = reference_forward(weights, cfg, x)[:, prompts.shape[1] :]
    hit = (logits.argmax(-1) == canvases)[:, grid]
    return hit[given].float().mean().item(), hit[~given].float().mean().item()


def train(weighted: bool, a, cfg, tokenizer, train_set, eval_set) -> None:
    prompts, canvases = train_set
    weights = {k: torch.nn.Parameter(v) for k, v in random_hf_weights(cfg, seed=a.seed, std=0.02).items()}
    opt = torch.optim.AdamW(weights.values(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    spec = MaskingSpec(mode="continuous", eps=1e-3, stratified=False)
    gen = torch.Generator().manual_seed(a.seed)
    start = time.perf_counter()
    for step in range(1, a.train_steps + 1):
        lr = a.lr * min(1.0, step / 10)
        lr *= a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * step / a.train_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, prompts.shape[0], (a.batch,), generator=gen)
        y = canvases[idx]
        j = torch.zeros(a.batch, dtype=torch.int64)
        sample = sample_masks(
            torch.ones_like(y, dtype=torch.bool),
            mc_seeds(a.seed, step * a.batch + torch.arange(a.batch), j),
            j,
            1,
            spec,
        )
        x = torch.cat([prompts[idx], torch.where(sample.mask, tokenizer.mask_id, y)], 1)
        logits = reference_forward(weights, cfg, x)[:, prompts.shape[1] :]
        nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [B, L]
        w = sample.weight if weighted else torch.ones_like(sample.weight)
        loss = (w[:, None] * nll * sample.mask).sum() / y.numel()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights.values(), 1.0)
        opt.step()
        if step % a.report == 0:
            given, empty = copy_and_solve(weights, cfg, tokenizer, *eval_set)
            name = "elbo_sft (1/t)" if weighted else "masked_sft (1)"
            print(
                f"| {name} | {step} | {given:.3f} | {empty:.3f} | {time.perf_counter() - start:.0f} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=Path("runs/tiny/base"))
    p.add_argument("--train-steps", type=int, default=600)
    p.add_argument("--report", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-ratio", type=float, default=2e-4 / 3e-3)
    p.add_argument("--gen-length", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = LLaDAConfig.from_json(a.base / "config.json")
    tokenizer = load_tokenizer(a.base / "tokenizer")
    task = get_task("sudoku_brief")
    train_examples = list(task.load(str(a.base / "train.csv"), split="train").examples)
    eval_examples = list(task.load(str(a.base / "eval.csv"), split="test", limit=128).examples)
    eval_prompts, eval_canvases = encode(tokenizer, task, eval_examples, a.gen_length)
    given = torch.tensor([[ch != "0" for ch in ex.puzzle] for ex in eval_examples])
    grid = grid_slice(tokenizer, eval_canvases[0].tolist())
    train_set = encode(tokenizer, task, train_examples, a.gen_length)
    eval_set = (eval_prompts, eval_canvases, given, grid)
    n_eval = len(eval_examples)
    print(f"{a.base}: {cfg.num_parameters / 1e6:.2f}M parameters, batch {a.batch}, {n_eval} held-out puzzles")
    print("| loss | step | given-cell acc | empty-cell acc | seconds |\n|---|---|---|---|---|")
    for weighted in (True, False):
        train(weighted, a, cfg, tokenizer, train_set, eval_set)


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
