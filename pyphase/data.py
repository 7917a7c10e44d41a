"""Corpora: loading text files and WikiText-2 folders into train/valid token arrays, downloading
and verifying known archives, the project's seeded synthetic corpus, and evaluation batches.
Tokenization, n-gram statistics and window sampling are done by the Rust core (`pyphase._core`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pyphase import _core


def eval_batches(tokens: np.ndarray, block: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sequential, non-overlapping evaluation batches ``(x, y)`` of shape ``(<=batch, block)``.

    Every target position ``1..m*block`` of the split is covered exactly once, where
    ``m = (len(tokens) - 1) // block``; the last ``(len(tokens) - 1) % block`` targets (less than
    one window) are left out. Only the last batch may hold fewer than ``batch`` windows.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    offsets = _core.eval_offsets(len(tokens), block)
    for start in range(0, len(offsets), batch):
        yield _core.gather_windows(tokens, offsets[start : start + batch], block)
