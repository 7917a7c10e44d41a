"""Type stubs for `pyphase._core`, the Rust extension (tokenizer, batcher, simulator)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__version__: str

# --- text: batcher ------------------------------------------------------------------------------
# A training window at offset o is x = tokens[o:o+block], y = tokens[o+1:o+block+1]; offsets are
# uniform in [0, n_tokens - block - 1]. Offsets are counter-based: window b of step `step` of the
# stream seeded by `seed` depends on (seed, step, b) only, identical on every machine/thread count.
# Every bad argument raises ValueError naming the bad value.

TokenArray = npt.NDArray[np.uint16] | npt.NDArray[np.uint32] | npt.NDArray[np.uint8] | npt.NDArray[np.int32] | npt.NDArray[np.int64]

def batch_offsets(
    n_tokens: int, block: int, batch: int, seeds: list[int], start_step: int, n_steps: int
) -> npt.NDArray[np.int64]:
    """Start offsets of shape (n_steps, len(seeds), batch) for steps start_step..start_step+n_steps-1."""

def eval_offsets(n_tokens: int, block: int) -> npt.NDArray[np.int64]:
    """Offsets 0, block, 2*block, ... of the (n_tokens - 1) // block whole non-overlapping windows.

    Targets 1..m*block are covered exactly once; the last (n_tokens - 1) % block are left out."""

def gather_windows(
    tokens: TokenArray,
    offsets: npt.NDArray[np.int64],
    block: int,
    out_x: npt.NDArray[np.int64] | None = None,
    out_y: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(x, y) of shape offsets.shape + (block,), into the caller's C-contiguous int64 buffers if
    given (returned as-is). Without buffers, x and y are views of one (2, ...) array. GIL released."""

def sample_batch(
    tokens: TokenArray, block: int, batch: int, seed: int, step: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One stream's batch at `step`: (x, y) of shape (batch, block)."""

def sample_packed(
    tokens: TokenArray,
    block: int,
    batch: int,
    seeds: list[int],
    step: int,
    out_x: npt.NDArray[np.int64] | None = None,
    out_y: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """K = len(seeds) independent streams at `step`: (x, y) of shape (K, batch, block);
    result[k] == sample_batch(tokens, block, batch, seeds[k], step)."""

# --- simulator ---
