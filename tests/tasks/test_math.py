"""GSM8K and MATH rewards: extraction, math-verify equivalence, d1 format values, real answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from megatron_bgpo.tasks import formats, get_task
from megatron_bgpo.tasks.base import answer_block, clean_completion, extract_final_answer, last_boxed
from megatron_bgpo.tasks.gsm8k import MathExample

STRICT = "<reasoning>\n7 + 11 = 18\n</reasoning>\n<answer>\n18\n</answer>\n"


def as_completion(answer: str) -> str:
    """A d1-format completion (generated after the <reasoning> prefill) whose answer is ``answer``."""
    eos = "<|eot_id|><|endoftext|><|endoftext|>"
    return f"Let me think.\n</reasoning>\n<answer>\n\\boxed{{{answer}}}\n</answer>{eos}"


def test_extraction() -> None:
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert (
        last_boxed("\\fbox{3}") == "3" and last_boxed("\\boxed{unclosed") is None and last_boxed("x") is None
    )
    assert answer_block("<answer>1</answer> <answer> 2 </answer>") == "2"
    assert answer_block("<answer>\n7 (truncated") == "7 (truncated"
    assert extract_final_answer("<answer>\\boxed{5} or \\boxed{6}</answer>") == "6"
    assert extract_final_answer("<answer>\n 42 \n</answer>") == "42"
    assert extract_final_answer("so \\boxed{9}.") == "9"
    assert extract_final_answer("<answer>\n\\boxed{...}\n</answer>") is None  # the prompt's placeholder
    assert extract_final_answer("no answer at all 12") is None
    assert clean_completion("x<|eot_id|><|endoftext|><|mdm_mask|>") == "x"


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<answer>\\boxed{18}</answer>", 1.0),
        ("<answer>18</answer>", 1.0),
        ("<answer>\\$18</answer>", 1.0),
        ("<answer>\\boxed{18.0}</answer>", 1.0),
        ("<answer>\\boxed{\\frac{36}{2}}</answer>", 1.0),
        ("<answer>18 dollars</answer>", 1.0),
        ("<answer>$18.</answer>", 1.0),
        ("<answer>18 or 19</answer>", 0.0),
        ("<answer>\\boxed{19}</answer>", 0.0),
        ("the answer is 18", 0.0),  # no <answer> / \boxed: nothing extracted
        ("", 0.0),
    ],
)
def test_gsm8k_accuracy_reward(completion: str, reward: float) -> None:
    assert get_task("gsm8k").reward(completion, MathExample("q", "?", "18")) == reward


def test_d1_reward_values() -> None:
    ex = MathExample("q", "?", "18")
    gsm = get_task("gsm8k", reward_mode="d1")
    assert formats.xml_count(STRICT) == 0.5 and formats.strict_format(STRICT) == 0.5
    assert formats.soft_format(STRICT) == 0.5 and formats.integer_answer(STRICT) == 0.5
    assert gsm.reward(STRICT, ex) == pytest.approx(4.0) == gsm.max_reward
    score = gsm.score("<reasoning>x</reasoning><answer>19</answer>trailing", ex)
    assert score.reward == 1.0 and not score.correct  # soft 0.5 + integer 0.5; no tag on its own line
    assert formats.xml_count("<reasoning>\nx\n</reasoning>\n<answer>\n1\n</answer>\nabc") == pytest.approx(
        0.5 - 0.006
    )
    math = get_task("math", reward_mode="d1")
    assert math.max_reward == 3.0
    assert math.reward("<answer>\\boxed{18}</answer>", ex) == 3.0
    assert math.reward("<answer>18</answer>", ex) == pytest.approx(2.0 + 0.75)
    assert math.reward("\\boxed{17}", ex) == pytest.approx(0.5)
    assert math.reward("17", ex) == pytest.approx(0.25)


def test_reward_crash_is_logged_and_scored_zero(caplog: pytest.LogCaptureFixture) -> None:
    task = get_task("math500")
    bad = MathExample("broken", "?", None)  # type: ignore[arg-type] - a broken record
    with caplog.at_level(logging.ERROR):
        score = task.score("<answer>\\boxed{1}</answer>", bad)
    assert score.reward == 0.0 and not score.correct and "error" in score.info
    assert "crashed" in caplog.text and "broken" in caplog.text and "boxed{1}" in caplog.text
    assert task.rewards(["<answer>\\boxed{1}</answer>"] * 2, [bad, MathExample("ok", "?", "1")]) == [0.0, 1.0]


def test_every_gsm8k_test_answer_max_and_perturbed_min(data_dir: Path) -> None:
    task = get_task("gsm8k")
    data = task.load(data_dir / "gsm8k_test.jsonl")
    assert len(data) == 1319 and data.report.n_skipped == 0
    examples = list(data)
    assert task.rewards([as_completion(e.answer) for e in examples], examples) == [1.0] * len(examples)
    # Raw GSM8K solution text (with its '#### 1,234' line) as the content of the answer block.
    raw = [f"<answer>{e.solution.split('####')[-1].strip()}</answer>" for e in examples]
    assert task.rewards(raw, examples) == [1.0] * len(examples)
    perturbed = [as_completion(str(int(e.answer) + 1)) for e in examples]
    assert task.rewards(perturbed, examples) == [0.0] * len(examples)


def test_every_math500_answer_max_and_perturbed_min(data_dir: Path) -> None:
    task = get_task("math500")
    data = task.load(data_dir / "math500_test.jsonl")
    assert len(data) == 500 and len({e.id for e in data}) == 500
    examples = list(data)
    assert task.rewards([as_completion(e.answer) for e in examples], examples) == [1.0] * 500
    assert task.rewards([as_completion(e.answer + "+1") for e in examples], examples) == [0.0] * 500


def test_math_train_layouts(data_dir: Path) -> None:
    task = get_task("math", prompt_style="train")
    data = task.load(data_dir / "math_train_verl.parquet", split="train", skip_malformed=True)
    # Two records of this file have an empty ground truth: reported, not silently dropped.
    assert len(data) == 7498 and data.report.n_skipped == 2
    assert all("row" in e.location for e in data.report.skipped)
    assert not any(e.question.endswith("\\boxed{}.") for e in data)
    raw = task.load([{"problem": "1+1?", "solution": "So it is $\\boxed{2}$."}])[0]
    assert raw.answer == "2" and task.reward("<answer>\\boxed{2}</answer>", raw) == 1.0
    row = json.loads((data_dir / "math500_test.jsonl").read_text().splitlines()[0])
    assert task.load([row])[0].answer == row["answer"]
