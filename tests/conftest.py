"""Shared pytest fixtures: the project's synthetic corpus, and the real corpora in `../shared/data`
(skipped where that folder is absent, e.g. a clone without the shared data beside it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """`$PYPHASE_SHARED/data` (or `$PYPHASE_SHARED` itself), else `../shared/data` beside the repo."""
    env = os.environ.get("PYPHASE_SHARED")
    candidates = [Path(env) / "data", Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "README.md").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared data folder not found (set PYPHASE_SHARED or place shared/ beside the repo)")
    return d


@pytest.fixture(scope="session")
def tinyshakespeare(shared_data: Path) -> Path:
    p = shared_data / "tinyshakespeare" / "input.txt"
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


@pytest.fixture(scope="session")
def tokens_u16() -> np.ndarray:
    """A 10,000-token array whose value at position i is a fixed function of i (easy to check)."""
    return (np.arange(10_000, dtype=np.int64) * 7919 % 65521).astype(np.uint16)
