"""End to end at TP=2 with 2 updates per rollout (off-policy): the first update after each rollout sees
d_j == 0 exactly (else the run stops with LogRatioMismatchError), the LR schedule spans all updates,
and metrics.jsonl carries the clamp fraction, the pre-clip gradient norm and the clipped-update share;
in-loop evaluation decodes with its own length and steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.distributed import run_distributed
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

STEPS = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _run_rank(rank: int, world: int, argv: list[str]) -> dict:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    register_dense_task()
    trainer = Trainer(parse_args(argv))
    from megatron_bgpo.training import evaluation, policy

    seen: list[tuple[int, int, int]] = []
    real_generate, real_eval = policy.generate, evaluation.Evaluator.__call__
    in_eval = [False]

    def spy(denoiser, prompts, config, **kw):  # records the sampler calls evaluation makes
        out = real_generate(denoiser, prompts, config, **kw)
        if in_eval[0]:
            seen.append((config.gen_length, config.steps, out.tokens.shape[1]))
        return out

    def evaluating(self, pol):
        in_eval[0] = True
        try:
            return real_eval(self, pol)
        finally:
            in_eval[0] = False

    policy.generate, evaluation.Evaluator.__call__ = spy, evaluating
    metrics = [r.metrics for r in trainer.run()]
    out = {"metrics": metrics, "updates": trainer.policy.scheduler.num_steps, "eval_lengths": seen}
    ps.destroy_model_parallel()
    return out


@pytest.mark.parametrize(
    "objective,clip,extra",
    [
        ("bgpo", 1e-4, {}),
        ("diffu_grpo", 1e-4, {}),
        ("bgpo", 0.0, {}),
        ("just_grpo", 1e-4, {"ar_block_length": 4}),  # 4 passes of 4 tokens per response
        ("bgpo", 1e-4, {"mc_coupling": "complementary", "num_mc_samples": 2}),
    ],
    ids=["bgpo", "diffu_grpo", "bgpo-no-clip", "just_grpo-k4", "bgpo-complementary"],
)
def test_off_policy_run_metrics_and_schedule(
    files, tmp_path: Path, objective: str, clip: float, extra: dict
) -> None:
    save = tmp_path / "ckpt"
    argv = flags(
        files,
        **extra,
        task=DENSE_TASK,
        objective=objective,
        tensor_model_parallel_size=2,
        rollout_batch_size=4,
        mini_batch_size=2,
        group_size=2,
        gen_length=16,
        block_length=16,
        diffusion_steps=4,
        eval_gen_length=32,
        eval_diffusion_steps=8,
        eval_interval=STEPS,
        eval_samples=2,
        temperature=1.0,
        lr=1e-3,
        min_lr=1e-5,
        lr_decay_style="linear",
        clip_grad=clip,  # 1e-4: every update is clipped; 0: no clipping, the norm is still reported
        train_steps=STEPS,
        save=str(save),
    )
    rank0 = run_distributed(_run_rank, 2, argv)[0]
    assert rank0["updates"] == 2 * STEPS
    last = rank0["metrics"][-1]
    assert last["lr"] == pytest.approx(1e-5)  # decayed over all 2 * STEPS updates, ends at --min-lr
    assert rank0["metrics"][0]["lr"] == pytest.approx(1e-3 - (1e-3 - 1e-5) * 2 / (2 * STEPS))
    assert rank0["eval_lengths"] == [(32, 8, 32)]
    records = [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert len(train) == STEPS and any(r["split"] == "eval" for r in records)
    for r in train:
        assert r["clamp_fraction"] == 0.0 and r["overflow_guard"] == 0.0
        assert r["grad_norm"] > 1e-4  # the pre-clip norm
        assert r["grad_clipped_fraction"] == (1.0 if clip else 0.0)
    if objective in ("diffu_grpo", "just_grpo"):
        assert all(0.0 <= r["ppo_clip_fraction"] <= 1.0 for r in train)


def _perturbed_rank(rank: int, world: int, argv: list[str]) -> str:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.training import loop, policy
    from megatron_bgpo.training.config import parse_args

    register_dense_task()
    real = policy.attach_policy_terms

    def perturbed(model, mbs, *args, **kw):  # old terms off by 1e-3 in canvas 1 of the first mini-batch
        real(model, mbs, *args, **kw)
        if mbs[0].old_terms is not None and mbs[0].canvas_ids[0] == 0:
            mbs[0].old_terms[1] += 1e-3

    policy.attach_policy_terms = perturbed
    trainer = loop.Trainer(parse_args(argv))
    try:
        trainer.run()
        message = "no error"
    except loop.LogRatioMismatchError as exc:
        message = str(exc)
    ps.destroy_model_parallel()
    return message


def test_first_update_mismatch_stops_every_rank_naming_the_canvas(files) -> None:
    small = dict(mini_batch_size=2, gen_length=16, block_length=16, diffusion_steps=4, train_steps=1)
    argv = flags(files, task=DENSE_TASK, tensor_model_parallel_size=2, **small)
    messages = run_distributed(_perturbed_rank, 2, argv)
    for rank, msg in enumerate(messages):
        assert msg.startswith("step 1 update 1: old and current terms"), msg
        assert f"rank {rank}:" in msg and "canvas 1: d = " in msg, msg
