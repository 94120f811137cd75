"""Mathematical equivalence of a final answer and the reference, through ``math-verify``.

Both sides are wrapped in ``\\boxed{}`` and parsed by math-verify (LaTeX and plain expressions); a
prediction that is one number with a currency sign or unit words ("$18", "18 dollars") that does not
match that way is retried with the number alone. The reference's parse is cached. Two plain
integers are compared directly (math-verify's verdict on them is plain equality; this skips two
sympy parses). math-verify bounds parsing and verification with SIGALRM, which only works in the
main thread; elsewhere it runs without a time limit.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from math_verify import parse, verify

from megatron_bgpo.tasks.base import math_verify_timeouts

_INTEGER = re.compile(r"-?\d+")
_NUMBER_WITH_UNIT = re.compile(r"\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*(?:[A-Za-z%][A-Za-z%\s.]*)?\.?")
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5


def _parse(text: str) -> list[Any]:
    timeout = PARSE_TIMEOUT_S if math_verify_timeouts() else None
    return parse("\\boxed{" + text + "}", parsing_timeout=timeout)  # type: ignore[arg-type]


@lru_cache(maxsize=1 << 16)
def _parse_gold(gold: str) -> tuple[Any, ...]:
    return tuple(_parse(gold))


def math_equal(prediction: str | None, gold: str) -> bool:
    """Whether ``prediction`` (an extracted final answer) equals ``gold`` mathematically."""
    if prediction is None or not prediction.strip():
        return False
    pred, ref = prediction.strip(), gold.strip()
    if _INTEGER.fullmatch(pred) and _INTEGER.fullmatch(ref):  # fast path, same verdict as math-verify
        return int(pred) == int(ref)
    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the reference answer {gold!r}")
    timeout = VERIFY_TIMEOUT_S if math_verify_timeouts() else None
    pred_parsed = _parse(pred)
    if pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=timeout):
        return True
    number = _NUMBER_WITH_UNIT.fullmatch(pred.replace("\\$", "$"))
    if number is None or number.group(1) == pred:
        return False
    # "18 dollars", "$18", "18%": the number alone (what d1's GSM8K evaluator reads).
    return bool(verify(gold_parsed, _parse(number.group(1)), timeout_seconds=timeout))
