"""TP ranks of one replica train on identical rewards even when their own scoring would disagree.

The run at TP=2 uses a reward that depends on the rank: the dense digit-share reward, squared on
odd ranks (group normalisation would undo an offset or a scale, not this). Rewards are scored once
per model-parallel group (on its first rank) and broadcast, so both TP ranks must build the same
advantages, and the whole run must equal, number for number and weight for weight, the same run
with the plain dense reward (what rank 0 computes).
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed import run_distributed
from tests.training.test_resume import TIMING
from tests.training.tiny_setup import DENSE_TASK, flags, make_tiny_run, register_dense_task

RANKED_TASK = "sudoku_digit_share_plus_rank"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def _train_rank(rank: int, world: int, argv: list[str]) -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from megatron_bgpo.tasks import TASKS, Score
    from megatron_bgpo.training.config import parse_args
    from megatron_bgpo.training.loop import Trainer

    register_dense_task()
    dense = TASKS[DENSE_TASK]

    class PlusRank(dense):  # type: ignore[misc, valid-type]
        name = RANKED_TASK

        def _score(self, text: str, example) -> Score:
            score = super()._score(text, example)
            return Score(score.reward ** (1 + dist.get_rank() % 2), score.correct, score.extracted)

    TASKS[RANKED_TASK] = PlusRank
    trainer = Trainer(parse_args(argv))
    metrics = [{k: v for k, v in r.metrics.items() if k not in TIMING} for r in trainer.run()]
    params = [p.detach().clone() for m in trainer.policy.model for p in m.module.parameters()]
    ps.destroy_model_parallel()
    return {"metrics": metrics, "params": params}


def _run(files: dict[str, str], task: str) -> list[dict]:
    argv = flags(
        files,
        task=task,
        objective="bgpo",
        tensor_model_parallel_size=2,
        group_size=4,
        micro_batch_size=16,
        gen_length=16,
        block_length=16,
        diffusion_steps=4,
        temperature=1.0,
        lr=3e-3,
        train_steps=2,
        eval_interval=0,
    )
    return run_distributed(_train_rank, 2, argv)


def test_rank_dependent_reward_is_scored_once_per_replica(files) -> None:
    ranked, plain = _run(files, RANKED_TASK), _run(files, DENSE_TASK)
    assert all(m["grad_norm"] > 0 for m in plain[0]["metrics"])  # the weights really move
    for rank in range(2):
        assert ranked[rank]["metrics"] == plain[rank]["metrics"]  # rank 0's rewards, on both ranks
        for a, b in zip(ranked[rank]["params"], plain[rank]["params"], strict=True):
            assert torch.equal(a, b)
