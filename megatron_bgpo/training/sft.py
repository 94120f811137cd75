"""Masked-diffusion SFT data: reference completions as canvases (objectives `elbo_sft`, `masked_sft`).

Used to warm-start tiny models (the CPU example) before RL; LLaDA-8B needs none. A reference
completion is the d1 answer format padded with EOS to ``gen_length`` (LLaDA SFT convention, spec §1.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from megatron_bgpo.diffusion.sampler import Prompts
from megatron_bgpo.rl.rollout import RolloutBatch
from megatron_bgpo.tasks import SudokuExample, Task
from megatron_bgpo.tokenizer import Tokenizer


def reference_completion(task: Task, example: Any) -> str:
    """A d1-format completion scoring the task's maximum reward (tasks with a known answer)."""
    if isinstance(example, SudokuExample):
        return f"<reasoning>\n</reasoning>\n<answer>\n{example.solution}\n</answer>"
    answer = getattr(example, "answer", None)
    if answer is None:
        raise ValueError(f"task {task.name!r} has no reference completion for SFT")
    return f"<reasoning>\n</reasoning>\n<answer>\n\\boxed{{{answer}}}\n</answer>"


def reference_canvas(
    tokenizer: Tokenizer, task: Task, examples: Sequence[Any], gen_length: int
) -> torch.Tensor:
    """[N, gen_length] int64: each example's reference completion + EOS, padded with EOS (the SFT target)."""
    rows = []
    for ex in examples:
        ids = tokenizer.encode(reference_completion(task, ex)) + [tokenizer.eos_id]
        if len(ids) > gen_length:
            raise ValueError(f"reference completion of {len(ids)} tokens exceeds --gen-length {gen_length}")
        rows.append(ids + [tokenizer.eos_id] * (gen_length - len(ids)))
    return torch.tensor(rows, dtype=torch.int64)


def sft_batch(
    tokenizer: Tokenizer,
    prompts: Prompts,
    task: Task,
    examples: Sequence[Any],
    gen_length: int,
    uids: torch.Tensor,
    global_batch: int,
) -> RolloutBatch:
    """Prompt + EOS-padded reference canvas per example; loss weight 1 / (global batch x gen_length)."""
    n = len(examples)
    return RolloutBatch(
        prompt_ids=prompts.input_ids,
        prompt_mask=prompts.attention_mask,
        response_ids=reference_canvas(tokenizer, task, examples, gen_length),
        advantages=torch.ones(n, dtype=torch.float64),
        response_uid=uids,
        loss_weight=torch.full((n,), 1.0 / (global_batch * gen_length), dtype=torch.float64),
    )
