"""``--overfit-batch``: every step trains on the step-0 rollout batch and the in-loop evaluation scores
exactly those prompts (experiments/fixed_prompts.py; no patching of the Trainer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_bgpo.training.data import PromptSource
from tests.distributed import run_distributed
from tests.training.tiny_setup import flags, make_tiny_run


def test_fixed_source_serves_batch_zero_at_every_step() -> None:
    moving, fixed = (
        PromptSource(list(range(10)), 4, seed=5),
        PromptSource(list(range(10)), 4, seed=5, fixed=True),
    )
    first = moving.batch(0)
    assert fixed.batch(0) == first
    assert any(moving.batch(s) != first for s in range(1, 6))  # the ordinary source moves on
    for step in (1, 2, 7):  # within the first epoch and past it (2 batches per epoch)
        assert fixed.batch(step) == first
        shards = [fixed.shard(step, r, 2)[0] for r in range(2)]
        assert shards[0] + shards[1] == first


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _rank(rank: int, world: int, argv: list[str]) -> dict:
    from megatron.core import parallel_state as ps

    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    trainer = Trainer(parse_args(argv))
    g, source = trainer.groups, trainer.train_source
    shards = [source.shard(s, g.dp_rank, g.dp_size)[0] for s in range(3)]
    out = {
        "eval": [ex.puzzle for ex in trainer.evaluate.examples],
        "batch0": [ex.puzzle for ex in source.batch(0)],
        "shards": [[ex.puzzle for ex in sh] for sh in shards],
    }
    trainer.run()
    ps.destroy_model_parallel()
    return out


def test_overfit_run_trains_and_evaluates_on_batch_zero(files, tmp_path: Path) -> None:
    save = tmp_path / "run"
    argv = flags(files, overfit_batch="true", train_steps=2, eval_interval=1, save=str(save))
    ranks = run_distributed(_rank, 2, argv)  # DP=2
    batch0 = ranks[0]["batch0"]
    assert len(batch0) == 4
    for r in ranks:
        assert r["eval"] == batch0  # the evaluator scores the training prompts, all of them
        assert all(sh == r["shards"][0] for sh in r["shards"])  # the same shard at every step
    assert ranks[0]["shards"][0] + ranks[1]["shards"][0] == batch0
    lines = [json.loads(x) for x in (save / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "eval"] == [1, 2], lines
    rewards = [json.loads(x) for x in (save / "eval_rewards.jsonl").read_text().splitlines()]
    assert [len(x["rewards"]) for x in rewards] == [4, 4]  # one reward per training prompt
