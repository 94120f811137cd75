"""Code generation scored by running the program and its tests in the sandbox (``sandbox.py``).

The program is the last fenced Python block of the ``<answer>`` block (else of the whole completion,
else the raw answer text). Reward: the fraction of tests passed (``reward_mode="fraction"``, d1) or
1.0 only if all pass (``"all_pass"``, DeepCoder); ``Score.correct`` (pass@1) is all tests passing.
A program that times out, crashes, floods its output or breaks a limit passes no further test.

The generic ``code`` task trains on any JSON/JSONL/parquet file of problems. Each record needs a
problem statement (``question``/``prompt``/``problem``/``text``) and tests, as any of:

- ``tests``/``test_list``: a list of assert snippets, each one test;
- a list of ``{"input": ..., "output": ...}`` (stdin/stdout tests; also APPS/TACO
  ``{"inputs": [...], "outputs": [...]}``);
- ``test``: a test file as a string, either HumanEval style (``def check(candidate)`` plus an
  ``entry_point``), pytest style (``def test_*()`` functions, each one test; ``from solution import f``
  works), or plain asserts (each top-level assert one test, the other statements run first).

Optional: ``entry_point``, ``test_setup``/``test_setup_code``, ``program_prefix`` (prepended to the
model's code, e.g. HumanEval's signature and imports), ``solution`` (reference program), ``id``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from megatron_bgpo.tasks import prompts
from megatron_bgpo.tasks.base import Message, PromptStyle, Score, Task, answer_block, clean_completion
from megatron_bgpo.tasks.sandbox import ExecutionResult, Job, Sandbox, SandboxConfig

logger = logging.getLogger(__name__)

CodeRewardMode = Literal["fraction", "all_pass"]
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


@dataclass(frozen=True)
class CodeExample:
    id: str
    question: str  # problem statement shown to the model
    tests: tuple[Any, ...]  # assert snippets, or {"input", "output"} dicts when mode == "io"
    mode: Literal["assert", "io"] = "assert"
    test_setup: str = ""
    entry_point: str | None = None
    program_prefix: str = ""
    reference: str | None = None  # a reference program (for checks), never shown to the model


def extract_code(text: str) -> str | None:
    """The program in a completion: last Python fence in ``<answer>``, else anywhere, else the answer."""
    block = answer_block(text)
    for region in ([block] if block else []) + [text]:
        fences = [code for tag, code in _FENCE.findall(region) if tag.lower() in _PYTHON_TAGS]
        if fences and fences[-1].strip():
            return fences[-1]
    return block if block else None


def tests_from_string(test: str, entry_point: str | None) -> tuple[str, tuple[str, ...]]:
    """Split a test file into (setup, tests); see the module docstring for the accepted styles."""
    if re.search(r"^def check\(", test, re.MULTILINE):
        if not entry_point:
            raise ValueError("a check(candidate) test needs an entry_point")
        return "", (test + f"\n\ncheck({entry_point})\n",)
    tree = ast.parse(test)
    test_fns = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    if test_fns:
        return test, tuple(f"{name}()" for name in test_fns)
    lines = test.splitlines(keepends=True)

    def source(node: ast.stmt) -> str:
        return "".join(lines[node.lineno - 1 : node.end_lineno])

    asserts = tuple(source(n) for n in tree.body if isinstance(n, ast.Assert))
    setup = "".join(source(n) for n in tree.body if not isinstance(n, ast.Assert))
    if not asserts:
        raise ValueError("test code has no check(), test_*() function or top-level assert")
    return setup, asserts


def normalize_tests(
    raw: Any, entry_point: str | None
) -> tuple[Literal["assert", "io"], str, tuple[Any, ...]]:
    """Turn the accepted test layouts into (mode, setup, tests)."""
    if isinstance(raw, str) and raw.lstrip()[:1] in ("[", "{"):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            pass  # Python test code that starts with a bracket
    if isinstance(raw, dict):
        if raw.get("fn_name"):
            raise ValueError("function-call (fn_name) tests are not supported; use asserts")
        inputs, outputs = raw["inputs"], raw["outputs"]
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs for {len(outputs)} outputs")
        raw = [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]
    if isinstance(raw, str):
        setup, tests = tests_from_string(raw, entry_point)
        return "assert", setup, tests
    if isinstance(raw, (list, tuple)) and raw:
        if all(isinstance(t, str) for t in raw):
            return "assert", "", tuple(raw)
        if all(isinstance(t, dict) and "input" in t and "output" in t for t in raw):
            as_text = lambda v: "\n".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
            return (
                "io",
                "",
                tuple({"input": as_text(t["input"]), "output": as_text(t["output"])} for t in raw),
            )
    raise ValueError(f"no usable tests (got {type(raw).__name__})")


def last_definition(prefix: str) -> str | None:
    """The last top-level function of a prompt (HumanEval style: the signature the model completes)."""
    try:
        tree = ast.parse(prefix)
    except SyntaxError:
        return None
    return next((n.name for n in reversed(tree.body) if isinstance(n, ast.FunctionDef)), None)


def tested_definition(reference: str | None, tests: Sequence[Any]) -> str | None:
    """The first top-level function or class of ``reference`` that the (assert) tests use, if any.

    It becomes the example's ``entry_point``: the one name the judge takes from the program even if it
    shadows a builtin (MBPP 126 defines ``sum``); other builtin names always stay the builtins.
    """
    if not reference or not all(isinstance(t, str) for t in tests):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # MBPP references: "\d" in plain strings
            tree = ast.parse(reference)
            used = {n.id for t in tests for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return None
    defs = (n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef))
    return next((name for name in defs if name in used), None)


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if record.get(key) not in (None, "", []):
            return record[key]
    raise KeyError(" / ".join(keys))


class CodeTask(Task[CodeExample]):
    """Generic code task (see the module docstring for the record layout)."""

    name = "code"

    def __init__(
        self,
        prompt_style: PromptStyle = "eval",
        reward_mode: CodeRewardMode = "fraction",
        sandbox: Sandbox | None = None,
        sandbox_config: SandboxConfig | None = None,
        workers: int | None = None,
    ) -> None:
        super().__init__(prompt_style)
        if reward_mode not in ("fraction", "all_pass"):
            raise ValueError(f"reward_mode must be 'fraction' or 'all_pass', got {reward_mode!r}")
        self.reward_mode = reward_mode
        self._sandbox = sandbox
        self._sandbox_args = (sandbox_config, workers)

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(*self._sandbox_args)
        return self._sandbox

    @property
    def max_reward(self) -> float:
        return 1.0

    # ---- data and prompts --------------------------------------------------------------------
    def example_from_record(self, record: dict[str, Any]) -> CodeExample:
        question = _first(record, "question", "prompt", "problem", "text", "description")
        entry_point = record.get("entry_point") or None
        raw_tests = _first(record, "tests", "test_list", "test", "input_output")
        mode, setup, tests = normalize_tests(raw_tests, entry_point)
        extra_setup = record.get("test_setup") or record.get("test_setup_code") or ""
        reference = record.get("solution") or record.get("reference") or None
        reference = reference if isinstance(reference, str) else None
        return CodeExample(
            id=str(record.get("id", record.get("task_id", ""))),
            question=str(question),
            tests=tests,
            mode=mode,
            test_setup=(str(extra_setup) + "\n" + setup) if extra_setup else setup,
            entry_point=entry_point or tested_definition(reference, tests),
            program_prefix=str(record.get("program_prefix") or ""),
            reference=reference,
        )

    def build_messages(self, example: CodeExample) -> list[Message]:
        return prompts.user(prompts.CODE + "\n\n" + example.question)

    # ---- execution -----------------------------------------------------------------------------
    def program_for(self, code: str, example: CodeExample) -> str:
        """The program to run: ``program_prefix`` + the code (a bare function body continues it)."""
        if not example.program_prefix:
            return code
        first = next((line for line in code.splitlines() if line.strip()), "")
        if first[:1] in (" ", "\t"):
            return example.program_prefix + code
        return example.program_prefix.rstrip("\n") + "\n\n\n" + code

    def job_for(self, program: str, example: CodeExample) -> Job:
        return Job(
            program,
            example.tests,
            example.test_setup,
            example.mode,
            trusted_prefix=example.program_prefix,
            entry_point=example.entry_point or last_definition(example.program_prefix),
        )

    def score_result(self, result: ExecutionResult, code: str | None = None) -> Score:
        if result.status == "sandbox_error":
            logger.error("sandbox failure (not the program's fault): %s", result.message)
        reward = result.fraction if self.reward_mode == "fraction" else float(result.all_passed)
        info = {
            "status": result.status,
            "passed": result.passed,
            "total": result.total,
            "message": result.message,
        }
        return Score(reward, result.all_passed, code, info)

    def _score(self, text: str, example: CodeExample) -> Score:
        return self.score_batch([text], [example])[0]

    def score_batch(self, completions: Sequence[str], examples: Sequence[CodeExample]) -> list[Score]:
        """Extract every program, run them in parallel in the sandbox pool, score from test results."""
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
        scores: list[Score | None] = [None] * len(completions)
        jobs: list[Job] = []
        pending: list[tuple[int, str]] = []
        for i, (completion, example) in enumerate(zip(completions, examples, strict=True)):
            try:
                code = extract_code(clean_completion(completion))
                if code is None or not code.strip():
                    scores[i] = Score(0.0, False, None, {"status": "no_code"})
                    continue
                jobs.append(self.job_for(self.program_for(code, example), example))
                pending.append((i, code))
            except Exception as exc:  # noqa: BLE001
                scores[i] = self._crashed(exc, completion, example)
        if jobs:
            try:
                results = self.sandbox.run_many(jobs)
            except Exception as exc:  # noqa: BLE001 - never let the pool take training down
                results = [
                    ExecutionResult(["not_run"] * len(j.tests), "sandbox_error", message=repr(exc))
                    for j in jobs
                ]
            for (i, code), result in zip(pending, results, strict=True):
                try:
                    scores[i] = self.score_result(result, code)
                except Exception as exc:  # noqa: BLE001
                    scores[i] = self._crashed(exc, completions[i], examples[i])
        return [s if s is not None else Score(0.0, False) for s in scores]

    def score(self, completion: str, example: CodeExample) -> Score:
        return self.score_batch([completion], [example])[0]
