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
