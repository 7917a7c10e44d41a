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

# The batcher's outputs hold at most 2**30 elements each: a larger request (offsets, or windows times
# block) raises ValueError "... is too large" before anything is allocated.

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
from collections.abc import Sequence
from typing import TypedDict

# Noisy quadratic model (NQM) simulator; the model is described in `pyphase.nqm` (NQMParams holds
# the keyword arguments d..init_power, and the optional radial part si_fraction, si_params,
# si_init_norm: all three or none, else ValueError; and its optional growth law si_growth_coef,
# si_growth_power: both or neither, only with the radial part, |w_si|^2 grows by coef*lr^power per
# step instead of by the simulated update). Every bad argument (negative or NaN LR, batch_size 0, d 0,
# clip <= 0, eps <= 0, NaN anywhere, unknown optimizer, threads outside 1..=1024, curve_points above
# 1,000,000, steps above 100,000,000) raises ValueError naming it; the GIL is released while
# trajectories run (rayon, `threads` workers or all cores). Results depend only on the arguments,
# never on the thread count: each seed's noise stream is derived from the seed alone and shared by
# every config of the call (common random numbers).

class SimResult(TypedDict):
    config: npt.NDArray[np.int64]  # index into batch_size/lr/clip; rows are config-major
    seed_index: npt.NDArray[np.int64]
    seed: npt.NDArray[np.int64]
    final_loss: npt.NDArray[np.float64]  # mean L(θ_t) over the last 10% of steps; inf if diverged
    clip_frequency: npt.NDArray[np.float64]  # fraction of steps with ‖g‖ > clip
    grad_norm_before: npt.NDArray[np.float64]  # mean ‖g‖
    grad_norm_after: npt.NDArray[np.float64]  # mean ‖g‖ after clip_grad_norm_ (<= clip)
    clip_scale: npt.NDArray[np.float64]  # mean min(1, clip / (‖g‖ + 1e-6))
    effective_lr: npt.NDArray[np.float64]  # sgd: lr·clip_scale; adamw: lr·RMS(update)/RMS(unclipped twin's update)
    diverged: npt.NDArray[np.bool_]  # non-finite loss, or L − L_min > 100 (L(θ0) − L_min)
    diverged_step: npt.NDArray[np.int64]  # -1 when the run stayed finite
    curve: npt.NDArray[np.float64]  # (n, len(curve_steps)) L(θ_t) at curve_steps; inf after divergence
    curve_steps: npt.NDArray[np.int64]  # 0 and log-spaced steps up to `steps`
    rho_final: npt.NDArray[np.float64]  # ‖w_si‖/‖w_si(0)‖ at the end (1.0 without the radial part)

def simulate(
    *,
    d: int,
    h_max: float,
    alpha: float,
    sigma2: float,
    init_loss: float,
    loss_floor: float,
    init_power: float = 0.0,
    si_fraction: float | None = None,
    si_params: float | None = None,
    si_init_norm: float | None = None,
    si_growth_coef: float | None = None,
    si_growth_power: float | None = None,
    batch_size: Sequence[int],
    lr: Sequence[float],
    clip: Sequence[float | None],
    seeds: Sequence[int],
    steps: int,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    momentum: float = 0.9,
    warmup_steps: int = 0,
    schedule: Literal["constant", "cosine"] = "constant",
    curve_points: int = 20,
    precision: Literal["f32", "f64"] = "f32",
    twin: bool = True,
    threads: int | None = None,
) -> SimResult:
    """Every (config, seed) trajectory; config i is (batch_size[i], lr[i], clip[i]), None = no clip.

    AdamW and SGD compute what torch.optim.AdamW / torch.optim.SGD (dampening 0, coupled weight
    decay) compute after torch.nn.utils.clip_grad_norm_; the schedule is the trainer's (linear warmup,
    then constant or cosine to 0). `twin` runs each clipped AdamW trajectory's unclipped twin on the
    same noise, which `effective_lr` needs (NaN without it)."""

class TrajectoryRecord(SimResult):
    loss: npt.NDArray[np.float64]  # L(θ_t), t = 0..steps (shorter if diverged)
    grad_norm_before_steps: npt.NDArray[np.float64]  # ‖g_t‖ per step
    grad_norm_after_steps: npt.NDArray[np.float64]  # after clipping
    theta_final: npt.NDArray[np.float64]  # θ after the last step (d values)
    rho_steps: npt.NDArray[np.float64]  # ρ_t = ‖w_si‖/‖w_si(0)‖ per step (radial part; 1.0 without it)

def simulate_trajectory(
    *,
    d: int,
    h_max: float,
    alpha: float,
    sigma2: float,
    init_loss: float,
    loss_floor: float,
    init_power: float = 0.0,
    si_fraction: float | None = None,
    si_params: float | None = None,
    si_init_norm: float | None = None,
    si_growth_coef: float | None = None,
    si_growth_power: float | None = None,
    batch_size: int,
    lr: float,
    clip: float | None,
    seed: int,
    steps: int,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    momentum: float = 0.9,
    warmup_steps: int = 0,
    schedule: Literal["constant", "cosine"] = "constant",
    precision: Literal["f32", "f64"] = "f64",
) -> TrajectoryRecord:
    """One trajectory of the same engine with its per-step record (for small d: tests, inspection)."""

class NQMDescription(TypedDict):
    spectrum: npt.NDArray[np.float64]  # h_i = h_max i^-alpha
    theta0: npt.NDArray[np.float64]  # θ_i(0) = r (h_i/h_max)^(-init_power/2)
    init_grad_norm: float  # ‖H θ(0)‖
    trace_sigma: float  # per-example noise trace sigma2 · tr(H)
    b_simple: float  # trace_sigma / ‖H θ(0)‖² (McCandlish et al. 2018)
    scale_invariant: npt.NDArray[np.bool_]  # which directions stand for scale-invariant weights

def nqm_describe(
    *,
    d: int,
    h_max: float,
    alpha: float,
    sigma2: float,
    init_loss: float,
    loss_floor: float,
    init_power: float = 0.0,
    si_fraction: float | None = None,
    si_params: float | None = None,
    si_init_norm: float | None = None,
    si_growth_coef: float | None = None,
    si_growth_power: float | None = None,
) -> NQMDescription: ...
def adamw_reference(
    grads: npt.NDArray[np.float64],
    theta0: npt.NDArray[np.float64],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    clip: float | None = None,
) -> npt.NDArray[np.float64]:
    """θ after each AdamW step on `grads` (steps, d), each clipped as clip_grad_norm_ would; returns
    (steps + 1, d) with θ0 first. Same element update as the simulator, in f64."""

def sgd_reference(
    grads: npt.NDArray[np.float64],
    theta0: npt.NDArray[np.float64],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    clip: float | None = None,
) -> npt.NDArray[np.float64]:
    """As `adamw_reference`, for torch.optim.SGD (dampening 0, nesterov off)."""
