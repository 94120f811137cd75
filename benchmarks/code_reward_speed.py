"""Code-reward throughput: sandboxed programs scored per second, on the real HumanEval / MBPP files.

Scores, through ``Task.score_batch`` (the path the trainer uses), every HumanEval canonical solution,
the same number of wrong programs (the function returns ``None``), and the first ``--mbpp`` MBPP
test-split references, with ``--workers`` parallel sandboxes. Prints one markdown table row per set.

    taskset -c 0,1 .venv/bin/python benchmarks/code_reward_speed.py --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from megatron_bgpo.tasks import get_task
from megatron_bgpo.tasks.code import CodeExample
from megatron_bgpo.tasks.sandbox import SandboxConfig

ADD = "def add(a, b):\n    return a + b\n"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def answer(code: str) -> str:
    return f"<answer>\n```python\n{code}\n```\n</answer>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--humaneval", type=int, default=164, help="HumanEval problems to score (first N)")
    parser.add_argument("--mbpp", type=int, default=200, help="MBPP test-split problems to score (first N)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--trivial", type=int, default=0, help="also N copies of a two-assert add(a, b)")
    args = parser.parse_args()
    config = SandboxConfig(timeout_s=60, test_timeout_s=30, cpu_time_s=60)
    humaneval = get_task("humaneval", sandbox_config=config, workers=args.workers)
    he = list(humaneval.load(args.data / "HumanEval.jsonl.gz"))[: args.humaneval]
    humaneval.sandbox.probe()  # start-up probe outside the timing
    mbpp = get_task("mbpp", sandbox=humaneval.sandbox)
    mb = list(mbpp.load(args.data / "mbpp.jsonl", split="test"))[: args.mbpp]
    sets = [
        (f"HumanEval canonical (first {len(he)})", humaneval, he, [answer(e.reference) for e in he]),
        ("HumanEval wrong (returns None)", humaneval, he, [answer("    return None\n") for _ in he]),
        (f"MBPP test refs (first {len(mb)})", mbpp, mb, [answer(e.reference) for e in mb]),
    ]
    if args.trivial:
        add = CodeExample("add", "q", ("assert add(2, 3) == 5", "assert add(-4, 4) == 0"))
        sets.append(("trivial add(a, b)", mbpp, [add] * args.trivial, [answer(ADD)] * args.trivial))
    print(f"workers={args.workers}; isolation: {humaneval.sandbox.isolation}")
    print("| programs | n | all tests pass | seconds | programs/s |")
    print("|---|---|---|---|---|", flush=True)
    for name, task, examples, completions in sets:
        start = time.perf_counter()
        scores = task.score_batch(completions, examples)
        seconds = time.perf_counter() - start
        passed = sum(s.correct for s in scores)
        row = f"| {name} | {len(examples)} | {passed} | {seconds:.1f} | {len(examples) / seconds:.1f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
