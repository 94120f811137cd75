"""Does a Sudoku checkpoint read its puzzle? One denoiser pass per puzzle with the answer canvas fully masked.

    .venv/bin/python experiments/prompt_reliance.py --load runs/tiny/sft --data runs/tiny/base/eval.csv

For each puzzle the reference completion (d1 format, EOS-padded to ``--gen-length``) is masked entirely
and the model predicts the 16 grid digits at once, given (a) its own puzzle and (b) the next puzzle's
prompt (a control that keeps the digit statistics but breaks the link). Prints NLL per grid digit and
argmax accuracy on the given cells (pure copying) and on the empty cells (solving). A model that reads the
grid copies given cells far better than it solves empty ones; equal accuracies mean the prompt acts only
as a loose prior over digits.
"""

from __future__ import annotations

import argparse

import torch

from megatron_bgpo.diffusion.sampler import Prompts
from megatron_bgpo.parallel import ParallelConfig
from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.sudoku import SudokuExample
from megatron_bgpo.training.policy import load_for_inference
from megatron_bgpo.training.sft import reference_canvas


def grid_slice(tokenizer, ids: list[int]) -> slice:
    """Positions of the 16 single-digit tokens of the answer grid in a tokenized completion."""
    pieces = [tokenizer.decode([i]) for i in ids]
    for start in range(len(pieces) - 15):
        if all(len(p) == 1 and p.isdigit() for p in pieces[start : start + 16]):
            return slice(start, start + 16)
    raise ValueError("the tokenizer does not split the answer grid into 16 digit tokens")


@torch.no_grad()
def score(
    denoiser,
    tokenizer,
    task,
    examples: list[SudokuExample],
    prompt_examples: list[SudokuExample],
    gen_length: int,
):
    """(NLL per grid digit, given-cell accuracy, empty-cell accuracy) with the whole canvas masked."""
    prompt_ids = [tokenizer.encode(task.prompt_text(ex)) for ex in prompt_examples]
    prompts = Prompts.from_lists(prompt_ids, pad_id=tokenizer.pad_id)
    target = reference_canvas(tokenizer, task, examples, gen_length)  # the SFT canvas, EOS-padded
    grid = grid_slice(tokenizer, target[0].tolist())
    tokens = torch.cat([prompts.input_ids, torch.full_like(target, tokenizer.mask_id)], 1)
    attention = torch.cat([prompts.attention_mask, torch.ones_like(target, dtype=torch.bool)], 1)
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    logits = denoiser(tokens, attention, positions)[:, prompts.input_ids.shape[1] :, : tokenizer.vocab_size]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)[:, grid]
    hit = (logits.argmax(-1) == target)[:, grid]
    given = torch.tensor([[ch != "0" for ch in ex.puzzle] for ex in examples])
    return -logp.mean().item(), hit[given].float().mean().item(), hit[~given].float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="Megatron checkpoint folder (config.json, tokenizer/)")
    p.add_argument("--data", required=True, help="Sudoku CSV (d1 columns Puzzle,Solution)")
    p.add_argument("--task", default="sudoku_brief")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--gen-length", type=int, default=32, help="canvas length used in training")
    a = p.parse_args()
    tokenizer, policy = load_for_inference(a.load, None, ParallelConfig(1, 1), "fp32")
    denoiser = policy.denoiser
    task = get_task(a.task)
    examples = list(task.load(a.data, split="test", limit=a.samples).examples)
    shifted = examples[1:] + examples[:1]
    print(f"{a.load}: {len(examples)} puzzles from {a.data}, answer canvas fully masked")
    print("| prompt | NLL / grid digit | given-cell acc | empty-cell acc |\n|---|---|---|---|")
    for name, prompt_examples in (("own puzzle", examples), ("next puzzle's (control)", shifted)):
        nll, given, empty = score(denoiser, tokenizer, task, examples, prompt_examples, a.gen_length)
        print(f"| {name} | {nll:.3f} | {given:.3f} | {empty:.3f} |")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    from megatron_bgpo.cli import exit_on_bad_input

    with exit_on_bad_input():
        main()
