"""Code tasks: extraction, test layouts, reward modes, and the real HumanEval / MBPP references."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.code import CodeExample, extract_code, normalize_tests
from megatron_bgpo.tasks.sandbox import SandboxConfig

# Reference solutions get generous limits: a loaded CI machine must not turn a slow reference
# (MBPP 123 sums amicable numbers below 10000 in O(n^2)) into a failure.
GENEROUS = SandboxConfig(timeout_s=120, test_timeout_s=60, cpu_time_s=120)
FAST = SandboxConfig(timeout_s=10, test_timeout_s=2, cpu_time_s=5)


def answer(code: str) -> str:
    return f"<reasoning>\nplan\n</reasoning>\n<answer>\n```python\n{code}\n```\n</answer>"


def test_extract_code() -> None:
    assert extract_code(answer("x = 1")) == "x = 1\n"
    two = "```python\na = 1\n```\n<answer>\n```py\nb = 2\n```\n```python\nc = 3\n```\n</answer>"
    assert extract_code(two) == "c = 3\n"  # last Python block inside the answer
    assert extract_code("text\n```python\nd = 4\n```\nmore") == "d = 4\n"  # no answer block
    assert extract_code("<answer>\ndef f():\n    return 1\n</answer>") == "def f():\n    return 1"
    assert extract_code("<answer>\n```python\ne = 5\n") == "e = 5"  # truncated generation
    assert extract_code("```bash\nls\n```") is None
    assert extract_code("no code") is None


def test_normalize_tests_layouts() -> None:
    assert normalize_tests(["assert f(1) == 2", "assert f(2) == 3"], None) == (
        "assert",
        "",
        ("assert f(1) == 2", "assert f(2) == 3"),
    )
    mode, setup, tests = normalize_tests("def check(candidate):\n    assert candidate(1) == 2\n", "f")
    assert mode == "assert" and setup == "" and tests[0].endswith("check(f)\n")
    pytest_style = "from solution import f\n\ndef test_a():\n    assert f(1) == 2\n\n"
    pytest_style += "def test_b():\n    assert f(2) == 3\n"
    assert normalize_tests(pytest_style, None) == ("assert", pytest_style, ("test_a()", "test_b()"))
    plain = "import math\nassert f(1) == 2\nx = 3\nassert f(x) == 4\n"
    assert normalize_tests(plain, None) == (
        "assert",
        "import math\nx = 3\n",
        ("assert f(1) == 2\n", "assert f(x) == 4\n"),
    )
    io = json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
    assert normalize_tests(io, None) == (
        "io",
        "",
        ({"input": "1 2\n", "output": "3\n"}, {"input": "3 4\n", "output": "7\n"}),
    )
    with pytest.raises(ValueError):
        normalize_tests([], None)
    with pytest.raises(ValueError):
        normalize_tests({"fn_name": "f", "inputs": [], "outputs": []}, None)


def test_generic_code_task_from_json(tmp_path: Path) -> None:
    problems = [
        {"id": "asserts", "question": "Add one.", "tests": ["assert inc(1) == 2", "assert inc(5) == 6"]},
        {"id": "pytest", "prompt": "Add one.", "test": "from solution import inc\n\ndef test_one():\n"
         "    assert inc(1) == 2\n\ndef test_two():\n    assert inc(2) == 3\n"},
        {"id": "stdio", "problem": "Sum two numbers from stdin.",
         "tests": [{"input": "1 2", "output": "3"}, {"input": "10 20", "output": "30\n"}]},
    ]  # fmt: skip
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems), encoding="utf-8")
    task = get_task("code", sandbox_config=FAST, workers=2)
    examples = list(task.load(path))
    assert [e.mode for e in examples] == ["assert", "assert", "io"]
    inc, half = "def inc(x):\n    return x + 1", "def inc(x):\n    return x + 1 if x < 2 else 0"
    stdio = "a, b = map(int, input().split())\nprint(a + b)"
    completions = [answer(inc), answer(half), answer(stdio)]
    assert task.rewards(completions, examples) == [1.0, 0.5, 1.0]
    scores = task.score_batch([answer(half), answer(inc), "no code here"], examples)
    assert [s.reward for s in scores] == [0.5, 1.0, 0.0] and [s.correct for s in scores] == [
        False,
        True,
        False,
    ]
    assert scores[2].info["status"] == "no_code"
    all_pass = get_task("code", reward_mode="all_pass", sandbox=task.sandbox)
    assert all_pass.rewards([answer(half), answer("print(3)")], examples[1:]) == [0.0, 0.0]


def test_bare_function_body_continues_prompt() -> None:
    task = get_task("humaneval", sandbox_config=FAST)
    ex = CodeExample(
        "h",
        "q",
        ("def check(c):\n    assert c(2) == 4\n\ncheck(double)\n",),
        program_prefix='def double(x):\n    """Twice x."""\n',
    )
    assert task.reward("<answer>\n```python\n    return 2 * x\n```\n</answer>", ex) == 1.0
    assert task.reward("<answer>\n```python\ndef double(y):\n    return y + y\n```\n</answer>", ex) == 1.0
    assert task.reward("<answer>\n```python\ndef double(y):\n    return y\n```\n</answer>", ex) == 0.0


def test_all_humaneval_canonical_solutions_pass(data_dir: Path) -> None:
    task = get_task("humaneval", sandbox_config=GENEROUS, workers=2)
    examples = list(task.load(data_dir / "HumanEval.jsonl.gz"))
    assert len(examples) == 164
    scores = task.score_batch([answer(e.reference) for e in examples], examples)
    failed = [(e.id, s.info) for e, s in zip(examples, scores, strict=True) if not s.correct]
    assert failed == []
    assert task.sandbox.isolation.get("seccomp") or task.sandbox.isolation.get("python_guard")


def _mbpp_reference_run(data_dir: Path, split: str, every: int = 1) -> None:
    task = get_task("mbpp", sandbox_config=GENEROUS, workers=2)
    examples = list(task.load(data_dir / "mbpp.jsonl", split=split))
    examples = [e for i, e in enumerate(examples) if i % every == 0 or e.id == "mbpp/123"]
    scores = task.score_batch([answer(e.reference) for e in examples], examples)
    failed = [(e.id, s.info) for e, s in zip(examples, scores, strict=True) if not s.correct]
    print(f"MBPP {split}: {len(examples) - len(failed)}/{len(examples)} reference solutions pass")
    assert failed == []


def test_mbpp_reference_solutions_sample(data_dir: Path) -> None:
    """Every 3rd problem of the MBPP test split (ids 11-510) plus the slowest one (123).

    The full test split and all 974 problems run with BGPO_RUN_SLOW=1 (all pass; see docs/tasks.md).
    """
    _mbpp_reference_run(data_dir, "test", every=3)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BGPO_RUN_SLOW"), reason="all 974 MBPP problems: set BGPO_RUN_SLOW=1")
@pytest.mark.parametrize("split", ["test", "all"])
def test_mbpp_reference_solutions_full(data_dir: Path, split: str) -> None:
    _mbpp_reference_run(data_dir, split)
