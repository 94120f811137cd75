"""Rewards gathered over data-parallel ranks (gloo), and the evaluation library (Table 1, JSONL)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.base import Message, Score, Task
from megatron_bgpo.tasks.countdown import CountdownExample, solve
from megatron_bgpo.tasks.evaluation import (
    PAPER_TABLE1,
    REASONING_PREFILL,
    evaluate_generations,
    format_table,
    score_generations,
    select_examples,
    write_jsonl,
)
from megatron_bgpo.tasks.rewards import check_replica_consistent, gather_rewards, gather_scores, shard_bounds
from megatron_bgpo.tasks.sudoku import SudokuExample
from tests.distributed import run_distributed


class EchoTask(Task[str]):
    """Reward = float(completion); records which process scored it; 'boom' crashes."""

    name = "echo"

    @property
    def max_reward(self) -> float:
        return 1.0

    def example_from_record(self, record: dict[str, Any]) -> str:
        return str(record["x"])

    def build_messages(self, example: str) -> list[Message]:
        return [{"role": "user", "content": example}]

    def _score(self, text: str, example: str) -> Score:
        if text == "boom":
            raise RuntimeError("reward bug")
        return Score(float(text), True, text, {"pid": os.getpid()})


def test_shard_bounds() -> None:
    assert [shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(2, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert gather_rewards(EchoTask(), ["0.5", "boom"], ["a", "b"]) == [0.5, 0.0]  # no process group


def _gather_on_rank(rank: int, world_size: int) -> dict[str, Any]:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    task = EchoTask()
    local = [str(rank + 0.25), "boom"] if rank == 0 else [str(rank + 0.5)] * 3
    gathered = gather_rewards(task, local, ["x"] * len(local))
    full = ["0.1", "0.2", "boom", "0.4", "0.5"]
    sharded = gather_scores(task, full, ["x"] * 5, shard=True)
    return {
        "gathered": gathered,
        "sharded": [s.reward for s in sharded],
        "pids": [s.info.get("pid") for s in sharded],
    }


def test_rewards_gathered_over_ranks() -> None:
    results = run_distributed(_gather_on_rank, 2, timeout=120)
    for res in results:
        assert res["gathered"] == [0.25, 0.0, 1.5, 1.5, 1.5]
        assert res["sharded"] == [0.1, 0.2, 0.0, 0.4, 0.5]
    pids = results[0]["pids"]
    assert pids[0] == pids[1] != pids[3] == pids[4] and pids[2] is None  # rank 0: [0, 3), rank 1: [3, 5)


class RankTask(EchoTask):
    """Reward = float(completion) + this process's global rank: TP/PP ranks that scored on their own would
    disagree (as wall-clock timeouts can make code and math rewards do)."""

    def _score(self, text: str, example: str) -> Score:
        import torch.distributed as dist

        return Score(float(text) + dist.get_rank(), True, text, {"rank": dist.get_rank()})


def _replica_on_rank(rank: int, world_size: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    # Two replicas of a 2-way model-parallel model: mp groups {0, 1}, {2, 3}; dp groups {0, 2}, {1, 3}.
    mp_groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    dp_groups = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    mp, dp = mp_groups[rank // 2], dp_groups[rank % 2]
    local = [f"0.{rank // 2 + 1}", "0.5"]  # both ranks of a replica hold the same completions
    scores = gather_scores(RankTask(), local, ["x", "x"], group=dp, mp_group=mp)
    rewards = torch.tensor([s.reward for s in scores], dtype=torch.float64)
    check_replica_consistent(rewards, mp, "rewards")  # passes: scored once per replica
    try:
        check_replica_consistent(torch.tensor([float(rank)]), mp, "rewards")
        forced = "no error"
    except RuntimeError as exc:
        forced = str(exc)
    return {"rewards": rewards.tolist(), "scored_by": [s.info["rank"] for s in scores], "forced": forced}


def test_rewards_scored_once_per_model_parallel_group() -> None:
    results = run_distributed(_replica_on_rank, 4, timeout=120)
    # Each replica's scores come from its first rank (0 and 2), on every rank, gathered over DP.
    for res in results:
        assert res["rewards"] == [0.1, 0.5, 2.2, 2.5]
        assert res["scored_by"] == [0, 0, 2, 2]
        assert res["forced"].startswith("error: the ranks of one model-parallel group disagree")


def test_score_generations_and_jsonl(tmp_path: Path) -> None:
    from megatron_bgpo.tokenizer.chat import REASONING_PREFILL as CHAT_PREFILL

    assert REASONING_PREFILL == CHAT_PREFILL
    task = get_task("countdown")
    examples = [CountdownExample("a", (30, 100, 93), 23), CountdownExample("b", (1, 2, 3), 6)]
    completions = [f"\n</reasoning>\n<answer>\n\\boxed{{{solve((30, 100, 93), 23)}}}\n</answer>", "no idea"]
    prompts = [task.prompt_text(e, prefill=True) for e in examples]
    result = score_generations(task, examples, completions, prompts=prompts)
    assert (result.n, result.accuracy, result.mean_reward, result.metric, result.column) == (
        2,
        0.5,
        0.5,
        0.5,
        "Countdown",
    )
    path = tmp_path / "out" / "gen.jsonl"
    assert write_jsonl(path, result.records) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["correct"] and rows[1]["reward"] == 0.0
    assert rows[0]["prompt"].endswith("<reasoning>") and rows[0]["completion"] == completions[0]
    with pytest.raises(ValueError):
        score_generations(task, examples, completions[:1])


def test_select_examples() -> None:
    items = list(range(10))
    assert select_examples(items) == items and select_examples(items, 3) == [0, 1, 2]
    picked = select_examples(items, 4, seed=0)
    assert len(picked) == 4 and picked == sorted(picked) and picked == select_examples(items, 4, seed=0)


def test_table1_layout() -> None:
    table = format_table({"ours": {"MATH500": 45.66, "Sudoku": 26.0}})
    assert table == (
        "| model | MATH500 | GSM8K | HumanEval | MBPP | Sudoku | Countdown |\n"
        "|-------|---------|-------|-----------|------|--------|-----------|\n"
        "| ours  |    45.7 |     – |         – |    – |   26.0 |         – |"
    )
    sudoku = get_task("sudoku")
    ex = SudokuExample("s", "3102200002100320", "3142243142131324")
    evaluations, text = evaluate_generations(
        [(sudoku, [ex, ex], ["\n</reasoning>\n<answer>3142243142131324</answer>", "<answer>3142</answer>"])],
        model_name="mine",
    )
    assert evaluations[0].accuracy == 0.5 and evaluations[0].metric == pytest.approx((1 + 1 / 8) / 2)
    lines = text.splitlines()
    assert len(lines) == 2 + len(PAPER_TABLE1) + 1
    assert (
        lines[-1].startswith("| mine") and "56.2" in lines[-1] and lines[2].startswith("| LLaDA-8B-Instruct")
    )
