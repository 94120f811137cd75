"""Prepare the tiny CPU run: generated task data, a SentencePiece tokenizer trained on the task's own
prompts and answers, and a small LLaDA-shaped config sized to it.

    python -m megatron_bgpo.training.tiny --out runs/tiny/base

Writes ``train.csv`` / ``eval.csv`` (4x4 Sudoku puzzles with a unique solution, d1's column names),
``tokenizer/`` and ``config.json`` under ``--out``. The run trains on :data:`TINY_TASK`: d1's Sudoku reward
with only the puzzle line as prompt (33 tokens instead of 240), which a ~1M-parameter model learns within
a few hundred SFT steps on 2 cores (with d1's full prompt and Adam
beta2 0.999 it stayed at chance after 600 steps; docs/training.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from megatron_bgpo.models.llada import LLaDAConfig
from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.sudoku import generate_puzzles
from megatron_bgpo.tokenizer import train_sentencepiece
from megatron_bgpo.training.sft import reference_completion

TINY_TASK = "sudoku_brief"


def tiny_config(
    tokenizer, d_model: int, layers: int, rope_theta: float = 500000.0, num_experts: int = 0, top_k: int = 2
) -> LLaDAConfig:
    """A LLaDA-shaped config sized to ``tokenizer`` (head dim 32, SwiGLU width 3 x d_model). With
    ``num_experts`` > 0, LLaDA-MoE-shaped (as the tiny-moe preset): every block MoE, top-``top_k``
    experts of width d_model / 2 (LLaDA-MoE-7B's ratio), QK-norm."""
    moe = {}
    if num_experts:
        moe = dict(
            num_experts=num_experts,
            num_experts_per_tok=top_k,
            expert_intermediate_size=d_model // 2,
            qk_layernorm=True,
        )
    return LLaDAConfig(
        d_model=d_model,
        n_layers=layers,
        n_heads=d_model // 32,
        n_kv_heads=d_model // 32,
        mlp_hidden_size=3 * d_model,
        vocab_size=tokenizer.vocab_size,
        embedding_size=tokenizer.padded_vocab_size(multiple=64),
        max_sequence_length=512,
        mask_token_id=tokenizer.mask_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        rope_theta=rope_theta,
        **moe,
    )


def prepare(
    out: Path,
    n_empty: tuple[int, int],
    vocab_size: int,
    d_model: int,
    layers: int,
    seed: int,
    rope_theta: float = 500000.0,
    num_experts: int = 0,
    top_k: int = 2,
) -> LLaDAConfig:
    task = get_task(TINY_TASK)
    puzzles = generate_puzzles(2256, n_empty=n_empty, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", puzzles[:2000]), ("eval.csv", puzzles[2000:])):
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["Puzzle", "Solution"])
            writer.writerows((p.puzzle, p.solution) for p in rows)
    texts = [task.prompt_text(ex) + reference_completion(task, ex) for ex in puzzles[:500]]
    tokenizer = train_sentencepiece(texts, vocab_size, out / "tokenizer")
    cfg = tiny_config(tokenizer, d_model, layers, rope_theta, num_experts, top_k)
    cfg.to_json(out / "config.json")
    return cfg


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--n-empty",
        type=int,
        nargs=2,
        default=(3, 5),
        metavar=("MIN", "MAX"),
        help="empty cells per puzzle (d1's test puzzles have 8; fewer suits a tiny model)",
    )
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=1234, help="puzzle generation (train/eval split included)")
    p.add_argument(
        "--rope-theta",
        type=float,
        default=10000.0,
        help="RoPE base; LLaDA-8B's 500,000 makes the 65-token tiny task's copy step slow and seed-dependent",
    )
    p.add_argument("--num-experts", type=int, default=0, help="> 0: an LLaDA-MoE-shaped model (docs/moe.md)")
    p.add_argument("--top-k", type=int, default=2, help="experts per token (with --num-experts)")
    a = p.parse_args(argv)
    cfg = prepare(
        a.out,
        tuple(a.n_empty),
        a.vocab_size,
        a.d_model,
        a.layers,
        a.seed,
        a.rope_theta,
        a.num_experts,
        a.top_k,
    )
    print(
        f"tiny sudoku model: {cfg.num_parameters / 1e6:.2f}M parameters, vocab {cfg.vocab_size} "
        f"(embedding rows {cfg.embedding_size}); data, tokenizer and config.json in {a.out}"
    )


if __name__ == "__main__":
    main()
