"""Decode sampler outputs to text (loading a checkpoint for generation: training/policy.py)."""

from __future__ import annotations


def decode_outputs(tokenizer, out) -> list[str]:
    """Text of each generated row up to its first stop token (special tokens dropped)."""
    return [
        tokenizer.decode(row[: int(n)].tolist(), skip_special_tokens=True)
        for row, n in zip(out.tokens, out.lengths, strict=True)
    ]
