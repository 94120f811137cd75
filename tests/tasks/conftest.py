"""Shared fixtures: the real benchmark files in ``shared/data`` next to the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real task data not found at {DATA_DIR} (shared/data next to the repository root)")
    return DATA_DIR
