"""Type stubs for `pyphase._core`, the Rust extension (tokenizer, batcher, simulator)."""

from __future__ import annotations

import os
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

# --- text: tokenizer -----------------------------------------------------------------------------
# Errors: bad input raises ValueError with a one-line message naming the bad value (character with
# its U+ code and byte offset, id with its position, byte offset of invalid UTF-8); unreadable
# files raise OSError naming the path.

class CharTokenizer:
    """Character tokenizer over Unicode code points.

    Built from a corpus, the vocabulary is its sorted distinct characters (deterministic). Ids
    are uint16 while the vocabulary has at most 65,536 entries, else uint32."""

    def __init__(self, vocab: list[str], unk: str | None = None) -> None:
        """Vocabulary in the given order (id = position); `unk`, if not listed, is appended."""
    @staticmethod
    def from_text(text: str, unk: str | None = None) -> CharTokenizer: ...
    @staticmethod
    def from_bytes(data: bytes, unk: str | None = None) -> CharTokenizer:
        """UTF-8 bytes; invalid UTF-8 raises ValueError naming the byte offset."""
    @staticmethod
    def from_file(path: str | os.PathLike[str], unk: str | None = None) -> CharTokenizer: ...
    @staticmethod
    def from_json(s: str) -> CharTokenizer: ...
    @staticmethod
    def load(path: str | os.PathLike[str]) -> CharTokenizer: ...
    def to_json(self) -> str:
        """{"kind": "pyphase.CharTokenizer", "version": 1, "vocab": [...], "unk": str | null}"""
    def save(self, path: str | os.PathLike[str]) -> None: ...
    @property
    def vocab(self) -> list[str]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def dtype(self) -> Literal["uint16", "uint32"]: ...
    @property
    def unk(self) -> str | None: ...
    def encode(
        self, data: str | bytes, unknown: Literal["error", "unk"] = "error"
    ) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]:
        """Ids of `data`, one per character. A character outside the vocabulary raises (default)
        or maps to the unk id (unknown="unk"; ValueError if the tokenizer has no unk). GIL released."""
    def encode_file(
        self, path: str | os.PathLike[str], unknown: Literal["error", "unk"] = "error"
    ) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]: ...
    def decode(self, ids: npt.NDArray[np.integer] | list[int]) -> str:
        """Text of `ids`; an id outside [0, vocab_size) raises ValueError. GIL released."""
    def __len__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

def ngram_entropies(ids: npt.NDArray[np.integer] | list[int], max_order: int = 3) -> list[float]:
    """[H(X_t), H(X_t | X_{t-1}), H(X_t | X_{t-2}, X_{t-1}), ...] up to `max_order`, nats/token.

    Plug-in estimates: order k is H(k-gram) - H((k-1)-gram prefix) over the len(ids) - k + 1
    windows of length k."""

# --- simulator ---
