"""Load a Megatron LLaDA checkpoint for generation (tools/generate.py, tools/eval.py) and decode outputs."""

from __future__ import annotations

import torch

from megatron_bgpo.models.llada.config import LLaDAConfig
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.parallel.distributed import ParallelConfig


def load_for_inference(
    load: str, tokenizer_path: str | None, parallel: ParallelConfig, params_dtype: str = "bf16", seed: int = 0
):
    """Initialise distributed state, build the model at ``parallel`` and load ``load`` (any saved TP/PP).

    Returns (LLaDAConfig, Tokenizer, MegatronDenoiser). bf16 is used only with CUDA.
    """
    from megatron_bgpo.checkpointing.megatron_io import load_model_checkpoint, read_checkpoint_config
    from megatron_bgpo.models.llada.provider import build_model_chunks
    from megatron_bgpo.parallel import init_distributed, initialize_model_parallel, set_seed
    from megatron_bgpo.tokenizer import load_tokenizer

    init_distributed()
    pgs = initialize_model_parallel(parallel)
    set_seed(seed)  # also seeds megatron's model-parallel RNG tracker, which the forward uses
    cfg: LLaDAConfig = read_checkpoint_config(load)
    tokenizer = load_tokenizer(tokenizer_path or load)
    tokenizer.check_model_vocab(cfg.embedding_size)
    dtype = torch.bfloat16 if params_dtype == "bf16" and torch.cuda.is_available() else torch.float32
    chunks = build_model_chunks(cfg, parallel, pgs, params_dtype=dtype)
    load_model_checkpoint(chunks, load)
    return cfg, tokenizer, MegatronDenoiser(chunks, cfg)


def decode_outputs(tokenizer, out) -> list[str]:
    """Text of each generated row up to its first stop token (special tokens dropped)."""
    return [
        tokenizer.decode(row[: int(n)].tolist(), skip_special_tokens=True)
        for row, n in zip(out.tokens, out.lengths, strict=True)
    ]
