"""Shared behaviour of the command-line entry points (tools/*.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def exit_on_bad_input(*also: type[BaseException]) -> Iterator[None]:
    """Turn bad input (flags, paths, data files, parallel layouts, checkpoints) and the exception types
    ``also`` into one ``error:`` line and exit status 1, instead of a traceback. Bugs (other exception
    types) still show their traceback."""
    from megatron_bgpo.checkpointing.hf_io import CheckpointError

    try:
        yield
    except (ValueError, FileNotFoundError, KeyError, CheckpointError, *also) as exc:
        raise SystemExit(f"error: {exc}") from exc


def renamed_flag(parser, old: str, new: str) -> None:
    """Make ``old`` (a former spelling) fail with a message naming ``new``, the one name of the setting
    across all entry points."""
    import argparse

    class _Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{old} was renamed {new} (the same flag in every tool); use {new}")

    parser.add_argument(old, action=_Renamed, nargs="?", help=argparse.SUPPRESS)
