"""Test helpers: a straightforward LLaDA ``generate.py`` re-implementation and toy denoiser wrappers.

The reference follows ML-GSAI/LLaDA generate.py line by line (full vocab, one process, per-row topk),
with three documented differences needed to compare bit-for-bit with our sampler:
- position_ids are passed explicitly (our denoiser contract), continuing after the prompt;
- the MASK id is never proposed (logit set to -inf), as in our sampler;
- random numbers come from ``uniform_fn`` (default: our counter-based RNG with the sampler's keys)
  instead of ``torch.rand``, and the Gumbel-max uses LLaDA's form exp(l) / (-log u)^T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from megatron_bgpo.diffusion import rng


def get_num_transfer_tokens(mask_index: Tensor, steps: int) -> Tensor:
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    num_transfer_tokens = torch.zeros(mask_num.size(0), steps, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        num_transfer_tokens[i, : remainder[i]] += 1
    return num_transfer_tokens


@torch.no_grad()
def llada_generate(
    model,
    prompt: Tensor,
    attention_mask: Tensor,
    position_ids: Tensor,
    *,
    steps: int,
    gen_length: int,
    block_length: int,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int,
    eos_id: int = -1,
    logits_eos_inf: bool = False,
    seed: int = 0,
) -> Tensor:
    """Returns the generated region [B, gen_length]."""
    bsz, plen = prompt.shape
    x = torch.full((bsz, plen + gen_length), mask_id, dtype=torch.long)
    x[:, :plen] = prompt.clone()
    attention_mask = torch.cat(
        [attention_mask.bool(), torch.ones((bsz, gen_length), dtype=torch.bool)], dim=-1
    )
    position_ids = torch.cat([position_ids, position_ids[:, -1:] + 1 + torch.arange(gen_length)], dim=-1)
    prompt_index = x != mask_id
    rows = torch.arange(bsz)
    gen_pos = torch.arange(plen + gen_length) - plen  # position keys; prompt ones are never used

    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0
    steps = steps // num_blocks

    for num_block in range(num_blocks):
        block_mask_index = (
            x[:, plen + num_block * block_length : plen + (num_block + 1) * block_length] == mask_id
        )
        num_transfer_tokens = get_num_transfer_tokens(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                x_ = torch.cat([x, un_x], dim=0)
                am_ = torch.cat([attention_mask, attention_mask], dim=0)
                pi_ = torch.cat([position_ids, position_ids], dim=0)
                logits = model(x_, am_, pi_).double()
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x, attention_mask, position_ids).double()
            logits[:, :, mask_id] = -torch.inf
            if logits_eos_inf:
                logits[:, :, eos_id] = -torch.inf
            if temperature > 0:
                vocab = torch.arange(logits.shape[-1])
                noise = rng.uniform(
                    seed, rng.Stream.GUMBEL, rows[:, None, None], gen_pos[None, :, None], i, vocab
                )
                logits_with_noise = logits.exp() / (-torch.log(noise)) ** temperature
            else:
                logits_with_noise = logits
            x0 = torch.argmax(logits_with_noise, dim=-1)
            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)
                x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
            elif remasking == "random":
                x0_p = rng.uniform(seed, rng.Stream.REMASK, rows[:, None], gen_pos[None, :], i)
            else:
                raise NotImplementedError(remasking)
            x0_p[:, plen + (num_block + 1) * block_length :] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -torch.inf)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(confidence.shape[0]):
                _, select_index = torch.topk(confidence[j], k=int(num_transfer_tokens[j, i]))
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]
    return x[:, plen:]


class VocabSlice:
    """Denoiser returning only the vocab columns [start, end) of a full-vocab model (a TP shard)."""

    def __init__(self, model, start: int, end: int) -> None:
        self.model, self.start, self.end = model, start, end

    def __call__(self, tokens: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        return self.model(tokens, attention_mask, position_ids)[..., self.start : self.end]


class StageOnly:
    """Pipeline stage stand-in: logits on the last stage, None elsewhere (still called every step)."""

    def __init__(self, model, is_last: bool) -> None:
        self.model, self.is_last, self.calls = model, is_last, 0

    def __call__(self, tokens: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor | None:
        self.calls += 1
        return self.model(tokens, attention_mask, position_ids) if self.is_last else None


class PaddedVocab:
    """Appends ``n_pad`` garbage (large) logit columns, like Megatron's padded vocab rows."""

    def __init__(self, model, n_pad: int) -> None:
        self.model, self.n_pad = model, n_pad

    def __call__(self, tokens: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        logits = self.model(tokens, attention_mask, position_ids)
        pad = torch.full((*logits.shape[:-1], self.n_pad), 50.0)
        return torch.cat([logits, pad], dim=-1)
