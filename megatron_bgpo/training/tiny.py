"""Prepare the tiny CPU run: a SentencePiece tokenizer trained on the task's own prompts and answers,
and a small LLaDA-shaped config sized to it.

    python -m megatron_bgpo.training.tiny --task sudoku --out runs/tiny/base
"""

from __future__ import annotations

import argparse
from pathlib import Path

from megatron_bgpo.models.llada import LLaDAConfig
from megatron_bgpo.tasks import get_task
from megatron_bgpo.tokenizer import train_sentencepiece
from megatron_bgpo.training.resources import load_examples
from megatron_bgpo.training.sft import reference_completion


def prepare(task_name: str, out: Path, vocab_size: int, d_model: int, layers: int, seed: int) -> LLaDAConfig:
    task = get_task(task_name)
    examples = load_examples(task, None, "train", seed)
    texts = [task.prompt_text(ex) + reference_completion(task, ex) for ex in examples[:500]]
    tokenizer = train_sentencepiece(texts, vocab_size, out / "tokenizer")
    rows = tokenizer.padded_vocab_size(multiple=64)
    cfg = LLaDAConfig(
        d_model=d_model,
        n_layers=layers,
        n_heads=d_model // 32,
        n_kv_heads=d_model // 32,
        mlp_hidden_size=3 * d_model,
        vocab_size=tokenizer.vocab_size,
        embedding_size=rows,
        max_sequence_length=512,
        mask_token_id=tokenizer.mask_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    cfg.to_json(out / "config.json")
    return cfg


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sudoku")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)
    cfg = prepare(a.task, a.out, a.vocab_size, a.d_model, a.layers, a.seed)
    print(
        f"tiny {a.task} model: {cfg.num_parameters / 1e6:.2f}M parameters, vocab {cfg.vocab_size} "
        f"(embedding rows {cfg.embedding_size}); files in {a.out}"
    )


if __name__ == "__main__":
    main()
