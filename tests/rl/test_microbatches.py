"""Packing details the objectives rely on: d1's mean-field canvas (full masked completion attended,
log-probs counted up to the first EOS) and the first-update d_j == 0 check naming the offenders."""

from __future__ import annotations

import torch

from megatron_bgpo.diffusion.masking import MaskingSpec
from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
from megatron_bgpo.rl.objectives import get_objective
from megatron_bgpo.rl.rollout import RolloutBatch
from megatron_bgpo.rl.update import log_ratio_mismatch

EOS, MASK, PAD = 9, 99, 0


def _batch() -> RolloutBatch:
    prompts = torch.tensor([[PAD, 5, 6], [4, 5, 6]])
    responses = torch.tensor([[1, 2, EOS, EOS, EOS], [1, 2, 3, 4, 1]])
    return RolloutBatch(
        prompt_ids=prompts,
        prompt_mask=prompts != PAD,
        response_ids=responses,
        advantages=torch.tensor([1.0, -1.0], dtype=torch.float64),
        response_uid=torch.arange(2),
        loss_weight=torch.full((2,), 0.5, dtype=torch.float64),
    )


def test_mean_field_canvas_is_d1s_for_either_elbo_token_count() -> None:
    for count in ("canvas", "first_eos"):
        cfg = PackingConfig(1, 8, MaskingSpec(count=count, eos_id=EOS), mask_id=MASK, prompt_mask_prob=0.0)
        (mb,) = build_microbatches(_batch(), get_objective("diffu_grpo"), cfg)
        assert (mb.tokens[:, 3:] == MASK).all()  # whole completion masked
        assert mb.tokens[:, :3].tolist() == [[PAD, 5, 6], [4, 5, 6]]  # prompt mask prob 0
        assert mb.attention_mask.tolist() == [[False] + [True] * 7, [True] * 8]  # full canvas attended
        completion = mb.loss_mask[:, mb.completion_slice]
        assert completion.tolist() == [[True, True, True, False, False], [True] * 5]  # up to first EOS


def test_log_ratio_mismatch_names_canvases_and_values() -> None:
    batch = _batch()
    cfg = PackingConfig(2, 3, MaskingSpec(eos_id=EOS), mask_id=MASK)
    mbs = build_microbatches(batch, get_objective("bgpo"), cfg)  # 4 canvases: [0, 1, 2], [3]
    terms = torch.tensor([-3.0, -2.0, -1.0])
    mbs[0].old_terms = terms.clone()
    assert log_ratio_mismatch(mbs[0], terms, None) == ""
    mbs[0].old_terms[2] = -1.0 - 2.0**-20  # one ulp-scale difference is enough
    line = log_ratio_mismatch(mbs[0], terms, None)
    assert line == "1 of 3 terms nonzero (canvas 2: d = 9.537e-07)"
    # per-token terms of diffu-GRPO: the row's canvas, the token, only over the completion mask
    (mf,) = build_microbatches(batch, get_objective("diffu_grpo"), PackingConfig(1, 8, cfg.masking))
    valid = mf.loss_mask[:, mf.completion_slice]
    lp = -torch.ones(2, 5)
    mf.old_terms = lp.clone()
    mf.old_terms[0, 4] = 7.0  # outside row 0's completion mask: ignored
    mf.old_terms[1, 3] = float("nan")
    assert log_ratio_mismatch(mf, lp, valid) == "1 of 8 terms nonzero (canvas 1 token 3: d = nan)"
