"""The LLaDA Megatron model as a sampler denoiser (diffusion/sampler.py contract).

Each call runs one forward-only pass through the pipeline schedule (every stage computes its part;
the last stage holds the vocab-parallel logits) and returns this rank's logits shard
[B, T, V/TP] on the last pipeline stage, None elsewhere. `vocab_shard` and `pipeline_comm` describe
the same layout for the sampler's distributed argmax and token broadcast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from megatron.core import parallel_state as ps

from megatron_bgpo.diffusion.sampler import PipelineComm
from megatron_bgpo.diffusion.vocab import VocabShard
from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.model import llada_forward
from megatron_bgpo.parallel.schedule import run_microbatches


class MegatronDenoiser:
    """Callable ``(tokens [B,T], attention_mask [B,T], position_ids [B,T]) -> logits shard | None``."""

    def __init__(
        self, model: Sequence[torch.nn.Module], cfg: LLaDAConfig, max_rows: int | None = None
    ) -> None:
        self.model = list(model)
        self.cfg = cfg
        self.max_rows = max_rows  # split a large batch into micro-batches of at most this many rows
        self.is_last_stage = ps.is_pipeline_last_stage()

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
        rows = tokens.shape[0]
        step_rows = self.max_rows or rows
        chunks = [
            (tokens[i : i + step_rows], attention_mask[i : i + step_rows]) for i in range(0, rows, step_rows)
        ]

        def step(batch, chunk):
            output = llada_forward(chunk, *batch)
            return output, lambda logits: (
                torch.zeros(()),
                torch.ones((), dtype=torch.int),
                {"logits": logits},
            )

        for m in self.model:
            m.eval()
        try:
            out = run_microbatches(
                self.model,
                step,
                chunks,
                seq_length=tokens.shape[1],
                micro_batch_size=step_rows,
                forward_only=True,
            )
        finally:
            for m in self.model:
                m.train()
        if not self.is_last_stage:
            return None
        return torch.cat([o["logits"].float() for o in out], dim=0)

    def vocab_shard(self) -> VocabShard:
        tp = ps.get_tensor_model_parallel_world_size()
        local = self.cfg.embedding_size // tp
        return VocabShard(
            tp_group=ps.get_tensor_model_parallel_group() if tp > 1 else None,
            vocab_start=ps.get_tensor_model_parallel_rank() * local,
            real_vocab_size=self.cfg.vocab_size if self.cfg.vocab_size < self.cfg.embedding_size else None,
        )

    def pipeline_comm(self) -> PipelineComm | None:
        if ps.get_pipeline_model_parallel_world_size() == 1:
            return None
        return PipelineComm(
            ps.get_pipeline_model_parallel_group(), ps.get_pipeline_model_parallel_last_rank()
        )
