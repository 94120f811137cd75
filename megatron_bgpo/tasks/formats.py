"""d1's format rewards (dllm-reasoning/d1 ``reward_func.py``; spec §4.4), used when a math task is
built with ``reward_mode="d1"``. Values:

- :func:`xml_count`: +0.125 for each tag line present exactly once (``<reasoning>\\n``,
  ``\\n</reasoning>\\n``, ``\\n<answer>\\n``, ``\\n</answer>``), minus 0.001 per character after the
  closing answer tag; at most 0.5.
- :func:`soft_format`: 0.5 if ``<reasoning>...</reasoning>\\s*<answer>...</answer>`` matches at the start.
- :func:`strict_format`: 0.5 if the whole completion is exactly
  ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n``.
- :func:`integer_answer`: 0.5 if the ``<answer>`` text is all digits (GSM8K).
- :func:`boxed_in_answer`: 0.5 x (1 if an ``<answer>`` block exists, + 1 if it contains
  ``\\boxed`` else 0.5), i.e. 0.25 / 0.5 / 0.75 / 1.0 (MATH). d1's code tests for a backspace
  character instead of ``\\boxed`` (a string-escape slip) and so only ever pays 0.25 or 0.75; we
  implement the evident intent.
"""

from __future__ import annotations

import re

_STRICT = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", re.DOTALL)
_SOFT = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)


def _d1_answer(text: str) -> str:
    # d1's extract_xml_answer: text after the last <answer>, up to the next </answer>.
    return text.split("<answer>")[-1].split("</answer>")[0].strip()


def xml_count(text: str) -> float:
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += 0.125
    if text.count("\n</reasoning>\n") == 1:
        count += 0.125
    if text.count("\n<answer>\n") == 1:
        count += 0.125
        count -= len(text.split("\n</answer>\n")[-1]) * 0.001
    if text.count("\n</answer>") == 1:
        count += 0.125
        count -= (len(text.split("\n</answer>")[-1]) - 1) * 0.001
    return count


def soft_format(text: str) -> float:
    return 0.5 if _SOFT.match(text) else 0.0


def strict_format(text: str) -> float:
    return 0.5 if _STRICT.match(text) else 0.0


def integer_answer(text: str) -> float:
    return 0.5 if _d1_answer(text).isdigit() else 0.0


def boxed_in_answer(text: str) -> float:
    if "<answer>" in text:  # as d1: the first answer block, to its close or the end
        inner, reward = text.split("<answer>", 1)[1].split("</answer>", 1)[0], 1.0
    else:
        inner, reward = text, 0.0
    return 0.5 * (reward + (1.0 if "\\boxed" in inner else 0.5))
