"""Calibration of the simulator on the real model.

This module owns the measurements that parameterise the noisy quadratic model (NQM, `pyphase.nqm`)
and the fit that turns them into NQM parameters:

- gradient noise: the unbiased two-batch-size estimator of McCandlish et al. 2018 ("An Empirical
  Model of Large-Batch Training", App. A) of the true gradient's norm² |G|² and the trace of the
  per-example gradient covariance tr(Σ), hence the simple noise scale B_simple = tr(Σ)/|G|²;
  plus what AdamW sees: ‖g‖ per batch size and the spread of per-coordinate second moments;
- curvature: Lanczos (full reorthogonalisation) on Hessian-vector products for the top eigenvalues,
  Hutchinson with Rademacher probes (deflated by the Lanczos basis) for the trace;
- the loss scale: the initial loss and a floor estimate (corpus n-gram entropy, or a power-law fit of
  the short run's own loss curve — never a sweep's outcome);
- `fit_nqm`: spectrum h_i = h_max·i^(-α) over d directions matching the top eigenvalues and the
  trace, noise σ² with σ²·tr(H) = tr(Σ), initial loss and floor, and the shape of θ(0)
  (`init_power`) that gives the measured initial gradient norm;
- `calibrate`: all of the above on the NanoTransformer at initialisation and at a few points of a
  short AdamW run, written as a calibration file with provenance.

An "example" is one training window of `block_size` tokens, the unit a sweep's batch size counts.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from pyphase.config import MAX_BATCH_SIZE, MAX_BATCH_WINDOWS, ModelShape, check_int, check_positive_float
from pyphase.errors import PyphaseError, shown
from pyphase.nqm import FIELDS as NQM_FIELDS

if TYPE_CHECKING:
    from pyphase.model import NanoTransformer, Shape

# --------------------------------------------------------------------------- gradient noise


@dataclass(frozen=True)
class NoiseEstimate:
    """|G|² and tr(Σ) (per example) from mean squared minibatch-gradient norms at several batch sizes.

    `*_se` are standard errors over independent repeats; `mean_sq_norm[j]` estimates E‖g_B‖² at
    `batch_sizes[j]`."""

    batch_sizes: tuple[int, ...]
    mean_sq_norm: tuple[float, ...]
    mean_sq_norm_se: tuple[float, ...]
    grad_norm2: float
    grad_norm2_se: float
    trace_sigma: float
    trace_sigma_se: float
    b_simple: float
    b_simple_se: float
    repeats: int

    def expected_norm(self, batch: float) -> float:
        """sqrt(E‖g_B‖²) = sqrt(|G|² + tr(Σ)/B): the typical minibatch gradient norm at batch B."""
        return math.sqrt(max(self.grad_norm2 + self.trace_sigma / batch, 0.0))


def _two_batch_design(batch_sizes: Sequence[int]) -> np.ndarray:
    """Least-squares map from E‖g_B‖² at each B to (|G|², tr(Σ)), using E‖g_B‖² = |G|² + tr(Σ)/B.

    With two batch sizes this is exactly McCandlish et al.'s pair
    |G|² = (B_big‖g_big‖² − B_small‖g_small‖²)/(B_big − B_small),
    tr(Σ) = (‖g_small‖² − ‖g_big‖²)/(1/B_small − 1/B_big)."""
    a = np.stack([np.ones(len(batch_sizes)), 1.0 / np.asarray(batch_sizes, dtype=np.float64)], axis=1)
    return np.linalg.pinv(a)  # (2, n_b)


def fit_two_batch(sq_norms: np.ndarray, batch_sizes: Sequence[int]) -> NoiseEstimate:
    """Estimate |G|², tr(Σ) and B_simple from `sq_norms[r, j]`, the mean ‖g‖² at `batch_sizes[j]`
    in independent repeat r. Each repeat gives an unbiased (|G|², tr(Σ)); the estimate is their mean
    and its standard error their spread. B_simple's error is a jackknife over repeats (a ratio)."""
    s = np.asarray(sq_norms, dtype=np.float64)
    sizes = tuple(int(b) for b in batch_sizes)
    if s.ndim != 2 or s.shape[1] != len(sizes):
        raise ValueError(f"sq_norms must have shape (repeats, {len(sizes)}), got {s.shape}")
    if len(set(sizes)) < 2:
        raise ValueError(f"the two-batch estimator needs at least two distinct batch sizes, got {list(sizes)}")
    if min(sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(sizes)}")
    r = s.shape[0]
    per_repeat = s @ _two_batch_design(sizes).T  # (R, 2): (|G|², tr Σ) per repeat
    g2, tr = per_repeat.mean(axis=0)

    def se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan

    if r > 1:
        loo = (per_repeat.sum(axis=0) - per_repeat) / (r - 1)  # leave-one-out means
        ratios = loo[:, 1] / loo[:, 0]
        b_se = float(math.sqrt((r - 1) / r * np.sum((ratios - ratios.mean()) ** 2)))
    else:
        b_se = math.nan
    return NoiseEstimate(
        batch_sizes=sizes,
        mean_sq_norm=tuple(float(v) for v in s.mean(axis=0)),
        mean_sq_norm_se=tuple(se(s[:, j]) for j in range(len(sizes))),
        grad_norm2=float(g2),
        grad_norm2_se=se(per_repeat[:, 0]),
        trace_sigma=float(tr),
        trace_sigma_se=se(per_repeat[:, 1]),
        b_simple=float(tr / g2),
        b_simple_se=b_se,
        repeats=r,
    )


@dataclass(frozen=True)
class NoiseMeasurement:
    """Everything one pass of minibatch gradients tells: the noise estimate, the loss on the same
    windows, the per-coordinate second moments AdamW would see, and a per-group split of |G|², tr(Σ)."""

    noise: NoiseEstimate
    loss: float
    loss_se: float
    sq_norms: np.ndarray  # (repeats, n_batch_sizes): the raw input of the estimator
    coord_signal: np.ndarray  # (P,) per-coordinate G_i² estimate (unbiased; may be < 0)
    coord_noise: np.ndarray  # (P,) per-coordinate Σ_ii (per example)
    groups: dict[str, tuple[float, float]]  # group -> (|G|², tr Σ) restricted to its coordinates
    mean_grad: Tensor  # mean gradient over every example drawn (flat, on the device)
    passes: int  # forward/backward passes
    examples: int  # examples (windows) through forward/backward


def measure_noise(
    grad_fn: Callable[[int], tuple[Tensor, Tensor]],
    batch_sizes: Sequence[int],
    repeats: int,
    group_ids: Tensor | None = None,
    group_names: Sequence[str] = (),
) -> NoiseMeasurement:
    """Draw minibatch gradients and estimate |G|², tr(Σ) with `fit_two_batch`.

    `grad_fn(m)` returns (mean gradient, flat, of m fresh independent examples; their mean loss).
    Every batch size must divide the largest one: each repeat draws B_max examples as micro-batches
    of m = gcd(batch_sizes), and the gradient of a batch of B is the mean of B/m consecutive micro
    gradients, so one repeat gives B_max/B samples of ‖g_B‖² for every B from one set of passes (an
    unbiased estimate of E‖g_B‖² for each B, as the per-device gradients in McCandlish et al.)."""
    sizes = [int(b) for b in batch_sizes]
    if len(set(sizes)) < 2:
        raise ValueError(f"need at least two distinct batch sizes, got {sizes}")
    if min(sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {sizes}")
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 (the spread over repeats is the error bar), got {repeats}")
    b_max = max(sizes)
    bad = [b for b in sizes if b_max % b]
    if bad:
        raise ValueError(f"every batch size must divide the largest ({b_max}); {bad} do not")
    m = math.gcd(*sizes)
    n_micro = b_max // m
    s1 = s2 = None  # running sums of micro gradients and their squares (per coordinate)
    losses: list[Tensor] = []
    rows = []
    for _ in range(repeats):
        acc: dict[int, Tensor] = {}
        row: list[Tensor] = []
        sums = {b: None for b in sizes}
        for j in range(n_micro):
            g, loss = grad_fn(m)
            g = g.detach().float()
            losses.append(loss.detach().float())
            s1 = g.clone() if s1 is None else s1.add_(g)
            s2 = g * g if s2 is None else s2.addcmul_(g, g)
            for b in sizes:
                k = b // m
                acc[b] = g.clone() if j % k == 0 else acc[b].add_(g)
                if (j + 1) % k == 0:
                    sq = (acc[b] / k).square().sum()
                    sums[b] = sq if sums[b] is None else sums[b] + sq
        for b in sizes:
            row.append(sums[b] / (b_max // b))
        rows.append(torch.stack(row))
        del acc
    assert s1 is not None and s2 is not None
    sq_norms = torch.stack(rows).cpu().double().numpy()
    noise = fit_two_batch(sq_norms, sizes)
    n = repeats * n_micro
    mean = (s1 / n).double()
    var = ((s2 / n).double() - mean * mean) * (n / (n - 1))  # variance of a micro gradient
    coord_noise = var * m  # Σ_ii per example
    coord_signal = mean * mean - var / n  # E[mean²] = G_i² + var/n
    groups: dict[str, tuple[float, float]] = {}
    if group_ids is not None:
        k = len(group_names)
        sig = torch.zeros(k, dtype=torch.float64, device=mean.device).index_add_(0, group_ids, coord_signal)
        noi = torch.zeros(k, dtype=torch.float64, device=mean.device).index_add_(0, group_ids, coord_noise)
        groups = {name: (float(a), float(b)) for name, a, b in zip(group_names, sig.tolist(), noi.tolist())}
    lv = torch.stack(losses).double().cpu().numpy()
    return NoiseMeasurement(
        noise=noise,
        loss=float(lv.mean()),
        loss_se=float(lv.std(ddof=1) / math.sqrt(len(lv))),
        sq_norms=sq_norms,
        coord_signal=coord_signal.cpu().numpy(),
        coord_noise=coord_noise.cpu().numpy(),
        groups=groups,
        mean_grad=s1 / n,
        passes=n,
        examples=n * m,
    )


# --------------------------------------------------------------------------- curvature

HVP = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LanczosResult:
    """Ritz values of the Krylov space (descending), each with its residual bound ‖Hy − θy‖
    (|β_m·s_m|, an error bound on the eigenvalue nearest θ), the orthonormal basis (rows) and
    tr(QᵀHQ) = Σ α_j."""

    ritz: np.ndarray
    residual: np.ndarray
    basis: Tensor
    basis_trace: float
    n_hvp: int


def rademacher(dim: int, generator: torch.Generator, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    """A ±1 vector drawn on the CPU (so every device sees the same probes), moved to `device`."""
    z = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8).to(dtype) * 2 - 1
    return z.to(device)


def lanczos(hvp: HVP, dim: int, n_iter: int, *, generator: torch.Generator,
            device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> LanczosResult:
    """`n_iter` steps of Lanczos with full reorthogonalisation (twice, for fp32) from a Rademacher
    start. Extreme eigenvalues converge first; the top few are accurate after ~20 steps on a spectrum
    with a decaying head. Stops early if the Krylov space becomes invariant."""
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    n_iter = min(n_iter, dim)
    q = rademacher(dim, generator, device, dtype)
    q = q / q.norm()
    basis = torch.empty(n_iter, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    beta_last = 0.0
    n_hvp = 0
    for j in range(n_iter):
        basis[j] = q
        w = hvp(q).to(dtype)
        n_hvp += 1
        alpha = float(torch.dot(w, q))
        alphas.append(alpha)
        qj = basis[: j + 1]
        for _ in range(2):  # full reorthogonalisation against every previous vector
            w = w - qj.T @ (qj @ w)
        beta = float(w.norm())
        beta_last = beta
        if j == n_iter - 1:
            break
        # invariant subspace: the tridiagonal matrix already holds exact eigenvalues
        if beta <= 1e-10 * max(1.0, max(abs(a) for a in alphas)):
            beta_last = 0.0
            break
        betas.append(beta)
        q = w / beta
    m = len(alphas)
    t = np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    vals, vecs = np.linalg.eigh(t)
    order = np.argsort(vals)[::-1]
    return LanczosResult(
        ritz=vals[order],
        residual=np.abs(beta_last * vecs[-1, order]),
        basis=basis[:m],
        basis_trace=float(sum(alphas)),
        n_hvp=n_hvp,
    )


@dataclass(frozen=True)
class TraceEstimate:
    trace: float
    se: float
    n_probes: int


def hutchinson_trace(hvp: HVP, dim: int, n_probes: int, *, generator: torch.Generator,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     deflate: LanczosResult | None = None) -> TraceEstimate:
    """Hutchinson's estimator tr(H) ≈ mean zᵀHz over Rademacher z, with its standard error.

    With `deflate`, the Lanczos basis Q is split off: tr(H) = tr(QᵀHQ) + tr(PHP), P = I − QQᵀ, and
    only the second term is estimated (probes Pz). Unbiased for any Q drawn independently of the
    probes, and with far less variance when Q holds the top eigendirections (they dominate ‖H‖_F)."""
    if n_probes < 2:
        raise ValueError(f"n_probes must be >= 2 for a standard error, got {n_probes}")
    samples = []
    for _ in range(n_probes):
        z = rademacher(dim, generator, device, dtype)
        if deflate is not None:
            qb = deflate.basis
            z = z - qb.T @ (qb @ z)
        samples.append(float(torch.dot(z, hvp(z).to(dtype))))
    s = np.asarray(samples, dtype=np.float64)
    base = deflate.basis_trace if deflate is not None else 0.0
    return TraceEstimate(trace=float(base + s.mean()), se=float(s.std(ddof=1) / math.sqrt(n_probes)),
                         n_probes=n_probes)


def hvp_closure(loss: Tensor, params: Sequence[Tensor]) -> HVP:
    """Hessian-vector products of `loss` w.r.t. `params` (flat vectors in, flat vectors out) by double
    backward: the gradient graph is built once and each product is one more backward through it."""
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    sizes = [p.numel() for p in params]

    def hvp(v: Tensor) -> Tensor:
        parts = [c.view_as(p) for c, p in zip(torch.split(v.to(params[0].dtype), sizes), params)]
        hv = torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True, allow_unused=True)
        return torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params)])

    return hvp


# --------------------------------------------------------------------------- loss floor

FLOOR_METHODS = ("ngram1", "ngram2", "ngram3", "ngram4", "fit")


@dataclass(frozen=True)
class FloorEstimate:
    """The NQM's L_min and how it was obtained; every candidate is kept for the record."""

    method: str
    value: float
    ngram_entropies: tuple[float, ...]  # plug-in H(X_t | k-1 previous tokens) on the train split, k = 1..4
    power_law: dict[str, float]  # fit of the short run's loss curve: L_inf, L_inf_se, A, gamma (or empty)


def ngram_entropies(train: np.ndarray, max_order: int = 4) -> tuple[float, ...]:
    """Plug-in conditional entropies of the train split (Rust core), orders 1..max_order, nats/token.

    Order k is the train loss of the best model that sees only the k-1 previous tokens: a loss a
    model with a longer context can reach, hence an upper estimate of its floor."""
    from pyphase import _core

    return tuple(float(h) for h in _core.ngram_entropies(np.ascontiguousarray(train), max_order))


def power_law_floor(steps: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """Fit L(t) = L_inf + A·t^(-γ) to a loss curve (log-spaced bins of the later 90% of steps, so the
    first steps' transient doesn't dominate). Short runs constrain L_inf poorly: read its SE."""
    from scipy.optimize import curve_fit

    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    ok = np.isfinite(y) & (t >= max(1.0, 0.1 * t.max()))
    t, y = t[ok], y[ok]
    if len(t) < 8:
        return {}
    edges = np.unique(np.geomspace(t.min(), t.max() + 1, 25).astype(np.int64))
    idx = np.digitize(t, edges)
    tb = np.array([t[idx == i].mean() for i in np.unique(idx)])
    yb = np.array([y[idx == i].mean() for i in np.unique(idx)])
    if len(tb) < 4:
        return {}

    def f(tt: np.ndarray, l_inf: float, a: float, g: float) -> np.ndarray:
        return l_inf + a * tt ** (-g)

    try:
        popt, pcov = curve_fit(f, tb, yb, p0=(0.5 * yb.min(), (yb[0] - 0.5 * yb.min()) * tb[0] ** 0.5, 0.5),
                               bounds=([0.0, 0.0, 1e-3], [yb.min(), np.inf, 5.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return {}
    return {"L_inf": float(popt[0]), "L_inf_se": float(math.sqrt(max(pcov[0, 0], 0.0))),
            "A": float(popt[1]), "gamma": float(popt[2])}


# --------------------------------------------------------------------------- NQM closed forms and fit

# Below this many directions spectrum sums are exact; above, the tail uses Euler-Maclaurin.
_EXACT_SUM = 4096


def spectrum_sum(alpha: float, d: int, power: float = 1.0) -> float:
    """Σ_{i=1}^{d} i^(-power·α) (= Σ h_i^power / h_max^power for h_i = h_max·i^(-α))."""
    s = power * alpha
    n = min(d, _EXACT_SUM)
    head = float(np.sum(np.arange(1, n + 1, dtype=np.float64) ** (-s)))
    if d <= n:
        return head
    a, b = float(n + 1), float(d)
    integral = math.log(b / a) if abs(s - 1.0) < 1e-12 else (b ** (1 - s) - a ** (1 - s)) / (1 - s)
    # Euler-Maclaurin to the first derivative term: error ~ s³ a^(-s-3), negligible at a > 4096.
    return head + integral + 0.5 * (a ** -s + b ** -s) + s / 12.0 * (a ** (-s - 1) - b ** (-s - 1))


@dataclass(frozen=True)
class NQMFit:
    """Fitted NQM parameters (the fields of `pyphase.nqm.NQMParams`, `NQM_FIELDS`) and how well they fit."""

    d: int
    h_max: float
    alpha: float
    sigma2: float
    init_loss: float
    loss_floor: float
    init_power: float  # γ: θ_i(0) ∝ h_i^(-γ/2), chosen so |Hθ(0)|² matches the measured |G|² at init
    top_eig_log_rms: float  # RMS of log(measured / fitted) over the top eigenvalues used
    n_eigs_used: int
    trace_matched: bool  # False only if d hit max_d before the trace was reached
    grad_norm_matched: bool  # False if γ had to be clamped to [0, 2]
    notes: tuple[str, ...] = ()

    def moments(self, k: int) -> dict[str, Any]:
        """Closed-form NQM quantities at θ(0) (see `nqm_moments`)."""
        return nqm_moments(self.d, self.h_max, self.alpha, self.sigma2, self.init_loss - self.loss_floor, k,
                           self.init_power)


def nqm_moments(d: int, h_max: float, alpha: float, sigma2: float, delta_loss: float, k: int,
                init_power: float = 0.0) -> dict[str, Any]:
    """Closed forms of the NQM at θ(0), θ_i(0) = r·(h_i/h_max)^(-γ/2) with ½Σh_iθ_i(0)² = ΔL: the
    top-k eigenvalues, tr(H), tr(Σ) = σ²·tr(H), |G|² = |Hθ(0)|², B_simple = tr(Σ)/|G|²."""
    g = init_power
    tr_h = h_max * spectrum_sum(alpha, d)
    r2 = 2.0 * delta_loss / (h_max * spectrum_sum(alpha, d, power=1.0 - g))
    g2 = r2 * h_max ** 2 * spectrum_sum(alpha, d, power=2.0 - g)
    top = [h_max * i ** (-alpha) for i in range(1, min(k, d) + 1)]
    return {"top_eigenvalues": top, "hessian_trace": tr_h, "trace_sigma": sigma2 * tr_h,
            "grad_norm2": g2, "b_simple": sigma2 * tr_h / g2}


#: Relative error within which the start counts as matching the measured |G(0)|² (the target may
#: sit just outside [0, 2] when it is exactly an isotropic start, as in a round trip).
GRAD_MATCH_TOL = 1e-2
#: The simulator's range for init_power (rust/sim/model.rs validates it).
INIT_POWER_RANGE = (0.0, 2.0)


def _init_power_for(target: float, h_max: float, alpha: float, d: int) -> float:
    """γ with |Hθ(0)|²/(2ΔL) = Σh^(2-γ)/Σh^(1-γ) = target; that ratio (a mean of h weighted by
    h^(1-γ)) falls monotonically in γ, from Σh²/Σh at γ = 0 to the harmonic mean of h at γ = 2.
    Clamped to INIT_POWER_RANGE when the target lies outside."""
    from scipy.optimize import brentq

    def ratio(g: float) -> float:
        return h_max * spectrum_sum(alpha, d, 2.0 - g) / spectrum_sum(alpha, d, 1.0 - g)

    lo, hi = INIT_POWER_RANGE
    if target >= ratio(lo):
        return lo
    if target <= ratio(hi):
        return hi
    return float(brentq(lambda g: ratio(g) - target, lo, hi, xtol=1e-12))


def _alpha_for_trace(ratio: float, d: int) -> float:
    """α with Σ_{i≤d} i^(-α) = ratio (requires 1 <= ratio <= d); the sum falls monotonically in α."""
    from scipy.optimize import brentq

    if ratio >= d:
        return 0.0
    if ratio <= 1.0 + 1e-12:
        return 60.0
    hi = 1.0
    while spectrum_sum(hi, d) > ratio:
        hi *= 2.0
    return float(brentq(lambda a: spectrum_sum(a, d) - ratio, 0.0, hi, xtol=1e-10, rtol=1e-12))


def fit_nqm(top_eigenvalues: Sequence[float], hessian_trace: float, trace_sigma: float, init_loss: float,
            loss_floor: float, init_grad_norm2: float | None = None, *, max_d: int = 1 << 20) -> NQMFit:
    """Fit the NQM spectrum h_i = h_max·i^(-α), i = 1..d, noise σ² and start θ(0) to measurements.

    - h_max = the largest measured eigenvalue;
    - for every d (log grid from tr(H)/h_max, the fewest directions that can hold the trace, to
      max_d), α(d) makes Σh_i = tr(H) exactly; the (d, α) whose h_2..h_k best match the measured
      next eigenvalues (least squares in log) wins;
    - σ² = tr(Σ)/tr(H), so that Σ_i σ²h_i equals the measured per-example tr(Σ);
    - init_loss and loss_floor as given: ½Σh_iθ_i(0)² = init_loss − loss_floor;
    - init_power γ (θ_i(0) ∝ h_i^(-γ/2)) so that |Hθ(0)|² = init_grad_norm2 (γ = 0, isotropic, if
      not given; clamped to [0, 2] with a note if no γ reaches it).
    Only positive eigenvalues enter (the NQM is convex; negative curvature is reported, not fitted)."""
    eig = np.sort(np.asarray([e for e in top_eigenvalues if np.isfinite(e) and e > 0], dtype=np.float64))[::-1]
    if len(eig) < 2:
        raise ValueError(f"need at least two positive top eigenvalues to fit the spectrum's decay, got {list(top_eigenvalues)}")
    if not (np.isfinite(hessian_trace) and hessian_trace > 0):
        raise ValueError(f"Hessian trace must be positive to fit an NQM, got {hessian_trace}")
    if not (np.isfinite(trace_sigma) and trace_sigma > 0):
        raise ValueError(f"tr(Sigma) must be positive, got {trace_sigma}")
    if not init_loss > loss_floor:
        raise ValueError(f"initial loss {init_loss} must exceed the loss floor {loss_floor}")
    if init_grad_norm2 is not None and not (np.isfinite(init_grad_norm2) and init_grad_norm2 > 0):
        raise ValueError(f"initial |G|^2 must be positive to fit the start, got {init_grad_norm2}")
    h_max = float(eig[0])
    k = len(eig)
    notes: list[str] = []
    ratio = hessian_trace / h_max
    ranks = np.log(np.arange(1, k + 1, dtype=np.float64))
    target = np.log(eig / h_max)
    d_lo = max(k, math.ceil(ratio))
    trace_matched = ratio >= 1.0 and d_lo <= max_d
    if trace_matched:

        def misfit(d: int) -> tuple[float, float]:
            a = _alpha_for_trace(ratio, d)
            return float(np.sqrt(np.mean((target + a * ranks) ** 2))), a

        grid = np.unique(np.rint(np.geomspace(d_lo, max_d, 64)).astype(np.int64)).tolist()
        scores = [misfit(d) for d in grid]
        best = int(np.argmin([s for s, _ in scores]))
        # refine between the grid neighbours of the best point (the misfit is smooth in log d)
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        fine = np.unique(np.rint(np.geomspace(lo, hi, 33)).astype(np.int64)).tolist()
        fine_scores = [misfit(d) for d in fine]
        j = int(np.argmin([s for s, _ in fine_scores]))
        d_best, (rms, alpha) = fine[j], fine_scores[j]
        if d_best in (grid[0], grid[-1]) and len(grid) > 1:
            notes.append(f"best d = {d_best} is at the edge of the search range [{grid[0]}, {grid[-1]}]")
    else:
        # No spectrum of this form holds the trace: take α from the top eigenvalues alone (log-log
        # slope through h_max) and the d whose trace comes closest.
        alpha = max(0.0, float(-np.sum(ranks * target) / np.sum(ranks * ranks)))
        d_best = k if ratio < 1.0 else max_d
        rms = float(np.sqrt(np.mean((target + alpha * ranks) ** 2)))
        why = (f"tr(H) = {hessian_trace:.4g} is below h_max = {h_max:.4g} (negative curvature cancels part of it)"
               if ratio < 1.0 else f"tr(H)/h_max = {ratio:.4g} exceeds max_d = {max_d}")
        notes.append(f"{why}: trace not matched; alpha from the top eigenvalues, d = {d_best}")
    delta = init_loss - loss_floor
    gamma, g_matched = 0.0, init_grad_norm2 is None
    if init_grad_norm2 is not None:
        gamma = _init_power_for(init_grad_norm2 / (2.0 * delta), h_max, alpha, d_best)
        got = nqm_moments(d_best, h_max, alpha, 0.0, delta, 1, gamma)["grad_norm2"]
        g_matched = abs(got / init_grad_norm2 - 1.0) < GRAD_MATCH_TOL
        if not g_matched:
            notes.append(f"no init_power in [0, 2] gives |G(0)|^2 = {init_grad_norm2:.4g} with a loss gap of "
                         f"{delta:.4g}: clamped to {gamma:g}, which gives {got:.4g}")
    # σ² against the fitted spectrum's own trace, so Σσ²h_i = tr(Σ) even where the trace wasn't matched
    tr_fit = h_max * spectrum_sum(alpha, d_best)
    return NQMFit(d=d_best, h_max=h_max, alpha=alpha, sigma2=float(trace_sigma / tr_fit),
                  init_loss=float(init_loss), loss_floor=float(loss_floor), init_power=gamma,
                  top_eig_log_rms=rms, n_eigs_used=k, trace_matched=trace_matched,
                  grad_norm_matched=g_matched, notes=tuple(notes))


# --------------------------------------------------------------------------- the real model

#: Model shapes `calibrate` knows: the sweeps' default, and a tiny one for quick CPU runs and tests.
SHAPES: dict[str, ModelShape] = {
    "default": ModelShape(),
    "tiny": ModelShape(d_model=32, n_layer=1, n_head=2, block_size=32),
}
#: The short AdamW run clips like the seed's sweeps; at its low LR clipping rarely binds.
RUN_CLIP = 1.0
#: Calibration windows come from batcher streams the trainer never uses (it uses the run's seed).
CALIB_STREAM = 0x5EED_CA1B
#: The sweep whose cost the calibration's budget is compared with.
REFERENCE_EXPERIMENT = "phase3a"
#: Experiments whose batch sizes the ‖g‖ table covers.
SWEEP_EXPERIMENTS = ("phase2_5", "phase3a", "phase3b")
#: An HVP by double backward costs about two forward+backward passes (it back-propagates through
#: the gradient's graph); used only to state the budget in forward/backward-equivalent tokens.
HVP_COST = 2.0
#: Parameter groups for the per-group split of |G|² and tr(Σ).
GROUPS = ("embed", "attn", "mlp", "norm", "head")


def _group_of(name: str) -> str:
    leaf = name.split(".")[-1]
    if leaf in ("wte", "wpe"):
        return "embed"
    if leaf.startswith("ln"):
        return "norm"
    if leaf.startswith(("attn", "proj")):
        return "attn"
    if leaf.startswith("fc"):
        return "mlp"
    return "head"


def _group_ids(shape: Shape, device: torch.device) -> Tensor:
    ids = [torch.full((math.prod(s),), GROUPS.index(_group_of(n)), dtype=torch.int64)
           for n, s in shape.param_shapes()]
    return torch.cat(ids).to(device)


class _Windows:
    """Calibration windows on the device: precomputed offsets from the Rust batcher, gathered like
    the trainer gathers them (x = tokens[o:o+T], y = tokens[o+1:o+T+1])."""

    def __init__(self, tokens: Tensor, n_tokens: int, block: int) -> None:
        self.tokens, self.n, self.block = tokens, n_tokens, block
        self.window = torch.arange(block + 1, device=tokens.device)

    def offsets(self, stream: int, batch: int, start: int, count: int) -> Tensor:
        from pyphase import _core

        offs = _core.batch_offsets(self.n, self.block, batch, [stream], start, count)
        return torch.from_numpy(offs[:, 0]).to(self.tokens.device)  # (count, batch)

    def gather(self, off: Tensor) -> tuple[Tensor, Tensor]:
        win = self.tokens[off[:, None] + self.window]
        return win[:, :-1], win[:, 1:]


def _params(model: NanoTransformer) -> list[Tensor]:
    return [model.p(n) for n, _ in model.shape.param_shapes()]


def _grad_fn(model: NanoTransformer, windows: _Windows, offsets: Tensor, progress: Callable[[], None]
             ) -> Callable[[int], tuple[Tensor, Tensor]]:
    """grad_fn for `measure_noise`: call i uses the i-th row of `offsets` (fresh windows each call)."""
    params = _params(model)
    it = iter(range(offsets.shape[0]))

    def fn(m: int) -> tuple[Tensor, Tensor]:
        off = offsets[next(it)]
        assert off.shape[0] == m
        x, y = windows.gather(off)
        _, loss = model(x, y)
        grads = torch.autograd.grad(loss, params)
        progress()
        return torch.cat([g.reshape(-1) for g in grads]), loss.detach()

    return fn


def _sdpa_math():  # type: ignore[no-untyped-def]
    """Attention through the math kernel: the fused kernels have no double backward, HVPs need one."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


@dataclass
class PointMeasurement:
    """Everything measured at one point of the short run (step 0 = initialisation)."""

    step: int
    loss: float  # mean train loss over the noise windows
    loss_se: float
    noise: NoiseEstimate
    sq_norms: list[list[float]]  # raw: mean ‖g_B‖² per repeat (rows) and batch size (columns)
    grad_norm_by_batch: dict[int, float]  # typical ‖g_B‖ = sqrt(|G|² + tr(Σ)/B)
    eigenvalues: list[float]  # top Ritz values of the Hessian (descending)
    eigen_residuals: list[float]  # their Lanczos residual bounds
    lambda_min: float  # the most negative Ritz value (negative curvature, not fitted by the NQM)
    grad_curvature: float  # ĝᵀHĝ/|ĝ|²: the curvature along the (all-windows mean) gradient
    hessian_trace: float
    hessian_trace_se: float
    groups: dict[str, dict[str, float]]  # group -> {"grad_norm2", "trace_sigma", "n_params"}
    adamw_view: dict[str, Any]  # per-coordinate second moments at each sweep batch size
    optimizer_state: dict[str, Any] | None  # the run's own AdamW state at this step (None at step 0)
    timings: dict[str, float]
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "noise"}
        d["noise"] = dict(self.noise.__dict__)
        d["grad_norm_by_batch"] = {str(k): v for k, v in self.grad_norm_by_batch.items()}
        return d


def _quantiles(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.1, 0.5, 0.9]) if len(x) else [math.nan] * 3
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def adamw_view(coord_signal: np.ndarray, coord_noise: np.ndarray, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """What AdamW's per-coordinate normalisation sees at batch B: v_i(B) = G_i² + Σ_ii/B.

    AdamW divides each coordinate by sqrt(v_i), so the global ‖g‖ matters only through clipping;
    the update's direction is set by the per-coordinate signal fraction G_i²/v_i(B) (1: clean
    signal, the update is ±lr along G; 0: pure noise, a random walk of step lr). Reported: quantiles
    of sqrt(v_i(B)) over coordinates, their p90/p10 spread, and the mean signal fraction."""
    sig = np.maximum(coord_signal, 0.0)
    out: dict[str, Any] = {}
    for b in batch_sizes:
        v = sig + coord_noise / b
        rms = np.sqrt(v)
        q = _quantiles(rms)
        frac = np.divide(sig, v, out=np.zeros_like(v), where=v > 0)
        out[str(b)] = {"rms_grad": q, "rms_spread_p90_p10": q["p90"] / q["p10"] if q["p10"] > 0 else math.inf,
                       "signal_fraction_mean": float(frac.mean())}
    return out


def nqm_adamw_view(fit: NQMFit, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """The same view for the fitted NQM at θ(0): direction i has G_i = h_i·θ_i(0), Σ_ii = σ²h_i."""
    h = fit.h_max * np.arange(1, fit.d + 1, dtype=np.float64) ** (-fit.alpha)
    shape2 = (h / fit.h_max) ** (-fit.init_power)
    theta2 = 2.0 * (fit.init_loss - fit.loss_floor) / float(np.sum(h * shape2)) * shape2
    return adamw_view(h * h * theta2, fit.sigma2 * h, batch_sizes)


def optimizer_view(m: Tensor, v: Tensor, step: int, betas: tuple[float, float], eps: float) -> dict[str, Any]:
    """The run's own AdamW state after `step` steps: quantiles of sqrt(v̂) and the RMS of the
    normalised update m̂/(sqrt(v̂)+ε) (≈1 for a steady signal, ≈sqrt((1−β1)/(1+β1)) for pure noise)."""
    b1, b2 = betas
    vh = (v.double() / (1 - b2 ** step)).clamp_min(0)
    mh = m.double() / (1 - b1 ** step)
    upd = mh / (vh.sqrt() + eps)
    return {"step": step, "sqrt_v_hat": _quantiles(vh.sqrt().cpu().numpy()),
            "update_rms": float(upd.square().mean().sqrt())}


# --------------------------------------------------------------------------- calibrate()

#: Ritz values whose residual bound exceeds this fraction of their value have not converged and
#: do not enter the spectrum fit.
RITZ_TOL = 0.1

METHOD_NOTES = (
    "An example is one window of block_size tokens (the unit of a sweep's batch size).",
    ("|G|^2 and tr(Sigma): unbiased two-batch-size estimator of McCandlish et al. 2018 (App. A), "
     "E|g_B|^2 = |G|^2 + tr(Sigma)/B; each repeat draws B_max fresh windows as micro-batches of "
     "gcd(batch sizes) and forms every batch size from them; error bars are the spread over repeats "
     "(B_simple: jackknife). Measured in fp32 on the train split, windows from a batcher stream the "
     "short run never draws from."),
    ("Curvature: Lanczos with full reorthogonalisation on Hessian-vector products (double backward, "
     "math attention kernel) of the mean loss on one fixed batch of hvp_batch windows; Ritz values "
     "with residual bound > RITZ_TOL of their value are not used in the fit. Trace: Hutchinson with "
     "Rademacher probes, deflated by the Lanczos basis (tr = sum of Lanczos alphas + probes on the "
     "complement), standard error from the probes. h_G: curvature along the mean gradient."),
    ("Short run: pyphase.train.PackTrainer (K = 1, AdamW as the sweeps run it, clip RUN_CLIP, constant "
     "LR) from the same initialisation as a sweep's seed; measurements are taken at steps_along. "
     "Nothing from any sweep's results is read."),
    ("Loss floor: ngramK = plug-in conditional entropy of order K on the train split (the train loss of "
     "the best model that sees K-1 previous characters, reachable by a model with a longer context, so "
     "an upper estimate of the floor); fit = L_inf of L(t) = L_inf + A t^-gamma fitted to the short "
     "run's train losses."),
    ("NQM fit: curvature and noise from the point at fit_step; h_max = top eigenvalue; d and alpha "
     "such that sum h_i = measured tr(H) exactly and h_2..h_k best match the next measured eigenvalues "
     "(least squares in log); sigma2 = tr(Sigma)/tr(H); init_loss = loss at step 0; theta_i(0) = "
     "r (h_i/h_max)^(-init_power/2) with 1/2 sum h_i theta_i^2 = init_loss - floor and init_power in "
     "[0, 2] chosen so |H theta(0)|^2 equals the |G|^2 measured at step 0 (clamped, with a note, when "
     "no init_power reaches it)."),
)


@dataclass
class Calibration:
    """The outcome of `calibrate`: fitted parameters, raw measurements, diagnostics, provenance."""

    fit: NQMFit
    points: list[PointMeasurement]
    fit_step: int
    floor: FloorEstimate
    run: dict[str, Any]
    consistency: dict[str, Any]
    budget: dict[str, Any]
    provenance: dict[str, Any]
    path: Path | None = None
    params: Any = None  # pyphase.nqm.NQMParams, as written to `path`

    def measurements(self) -> dict[str, Any]:
        """Raw measurements and diagnostics, JSON-ready (what the calibration file records)."""
        return {
            "fit_step": self.fit_step,
            "fit": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.fit.__dict__.items()},
            "points": [p.to_dict() for p in self.points],
            "floor": {"method": self.floor.method, "value": self.floor.value,
                      "ngram_entropies": list(self.floor.ngram_entropies), "power_law": self.floor.power_law},
            "run": self.run,
            "consistency": self.consistency,
            "budget": self.budget,
            "method_notes": list(METHOD_NOTES),
        }

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"path": str(self.path) if self.path else None,
                          "params": {k: getattr(self.fit, k) for k in NQM_FIELDS},
                          "provenance": self.provenance, **self.measurements()})


def parse_int_list(text: str, option: str) -> list[int]:
    """'32,256' -> [32, 256]; anything else is a one-line PyphaseError naming the option."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise PyphaseError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise PyphaseError(f"{option}: expected comma-separated integers, got {text!r}")
    return values


def parse_float_list(text: str, option: str) -> list[float]:
    """'0.001,0.003' -> [0.001, 0.003]; '' -> []; anything else is a one-line PyphaseError naming the option."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise PyphaseError(f"{option}: expected comma-separated numbers, got {text!r}") from None


MAX_STEPS_ALONG = 10_000_000  # training steps a calibration may run (its schedule is one array of them)
MAX_SEED = 2**31 - 1
# Largest value of each count option: far past any calibration (the defaults: 8 repeats, 24 Lanczos
# steps, 16 probes, top 8), and small enough that no size built from them overflows the 64-bit
# integers torch and the Rust batcher take (a larger one was an OverflowError traceback).
MAX_COUNTS = {"--repeats": 100_000, "--lanczos": 10_000, "--probes": 100_000, "--top-k": 10_000}
# Most windows the noise measurement draws at one point, repeats x the largest batch size: the Rust
# batcher draws them at once, at most 2^30 elements (rust/batcher.rs MAX_ELEMENTS).
MAX_NOISE_WINDOWS = MAX_BATCH_WINDOWS  # the same limit of the batcher


def check_out_file(out: str | Path | None) -> None:
    """Before any measurement: `--out` must be a file that can be written, so that a bad path does
    not lose the work at the end. The folder part is first `results.check_output_folder`'s check (the
    same words as `results export --dest`); then the folder is made and a probe file written and
    removed, since only a real write finds a folder that cannot be made (/proc, a read-only mount,
    root's unchecked permissions). Folders made by the probe are removed again."""
    if out is None:
        return
    from pyphase.results import check_output_folder, missing_folders, remove_empty_folders

    p = Path(out)
    try:
        if p.is_dir():
            raise PyphaseError(f"--out {p}: is a folder; give a file name")
    except OSError as e:  # e.g. a path component too long to look up
        raise PyphaseError(f"--out {p}: {e.strerror or e}") from None
    check_output_folder(p.parent, f"--out {p}")
    made = missing_folders(p.parent)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = p.parent / f".{p.name}.probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PyphaseError(f"--out {p}: cannot write there: {e.strerror or e}") from None
    finally:
        remove_empty_folders(made)  # only the folders this check made, and only if empty


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise PyphaseError(f"--seed: must be an integer in 0..{MAX_SEED}, got {seed!r}")


def _check_options(shape: str, batch_sizes: Sequence[int], steps_along: Sequence[int], lr: float,
                   run_batch: int, repeats: int, lanczos_iter: int, probes: int, hvp_batch: int, top_k: int,
                   floor: str, fit_step: int, max_d: int) -> None:
    """Every bad option is a one-line PyphaseError naming it (the CLI's exit code 2)."""
    if shape not in SHAPES:
        raise PyphaseError(f"--shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
    if any(b < 1 for b in batch_sizes):
        raise PyphaseError(f"--batch: batch sizes must be >= 1, got {list(batch_sizes)}")
    _check_largest_batch(batch_sizes)
    if len(set(batch_sizes)) < 2:
        raise PyphaseError(f"--batch: the two-batch estimator needs two distinct batch sizes, got {list(batch_sizes)}")
    bad = [b for b in batch_sizes if max(batch_sizes) % b]
    if bad:
        raise PyphaseError(f"--batch: every batch size must divide the largest ({max(batch_sizes)}); {bad} do not")
    if any(s < 0 for s in steps_along) or len(set(steps_along)) != len(steps_along):
        raise PyphaseError(f"--steps-along: expected distinct steps >= 0, got {list(steps_along)}")
    if max(steps_along, default=0) > MAX_STEPS_ALONG:
        raise PyphaseError(f"--steps-along: steps must be <= {MAX_STEPS_ALONG:,}, got {max(steps_along)}")
    if 0 not in steps_along:
        raise PyphaseError(f"--steps-along: must include 0 (the initialisation), got {list(steps_along)}")
    _check_lr(lr, "--lr")
    for name, v, lo in (("--run-batch", run_batch, 1), ("--repeats", repeats, 2), ("--lanczos", lanczos_iter, 2),
                        ("--probes", probes, 2), ("--hvp-batch", hvp_batch, 1), ("--top-k", top_k, 2)):
        check_int(v, name, minimum=lo, maximum=MAX_COUNTS.get(name, MAX_BATCH_SIZE))
    if repeats * max(batch_sizes) > MAX_NOISE_WINDOWS:
        raise PyphaseError(f"--repeats x the largest --batch: {repeats:,} x {max(batch_sizes):,} = "
                           f"{repeats * max(batch_sizes):,} noise windows a point, at most {MAX_NOISE_WINDOWS:,}")
    if top_k > lanczos_iter:
        raise PyphaseError(f"--top-k: {top_k} exceeds the Lanczos steps ({lanczos_iter})")
    if not 2 <= max_d <= 1 << 20:
        raise PyphaseError(f"--max-d: must be in 2..{1 << 20} (the simulator's limit), got {max_d}")
    if floor not in FLOOR_METHODS:
        raise PyphaseError(f"--floor: expected one of {', '.join(FLOOR_METHODS)}, got {floor!r}")
    if fit_step not in steps_along:
        raise PyphaseError(f"--fit-step: {fit_step} is not one of --steps-along {list(steps_along)}")


def _check_lr(lr: float, option: str) -> None:
    """A learning rate the trainer's float32 holds, checked as an experiment's lr is."""
    check_positive_float(lr, option)


def _check_largest_batch(sizes: Sequence[int]) -> None:
    if max(sizes, default=0) > MAX_BATCH_SIZE:
        raise PyphaseError(f"--batch: batch sizes must be <= {MAX_BATCH_SIZE:,} (the trainer's largest), got "
                           f"{shown(max(sizes))}")


def _check_run_length(steps: int, batch: int, option: str) -> None:
    """The short AdamW run trains `steps` steps of `batch` windows, drawn at once by the batcher."""
    if steps * batch > MAX_BATCH_WINDOWS:
        raise PyphaseError(f"{option} x --run-batch: {steps:,} x {batch:,} = {steps * batch:,} training windows, at "
                           f"most {MAX_BATCH_WINDOWS:,}")


def _out_of_memory(e: BaseException, device: Any, what: str) -> PyphaseError | None:
    """An allocation failure (`sweep.allocation_failure`) as a one-line error saying what was being
    done and how much was asked for; None for any other exception."""
    from pyphase.sweep import allocation_failure

    asked = allocation_failure(e)
    if asked is None:
        return None
    return PyphaseError(f"out of memory (--device {device}) while {what}: {asked} failed; use smaller --batch, "
                        "--hvp-batch, --run-batch or --repeats, or fewer --lanczos steps")


def _one_line_on_oom(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a measuring function so that an allocation failure inside it is one line (`_out_of_memory`)."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                err = _out_of_memory(e, kwargs.get("device", "auto"), what)
                if err is None:
                    raise
                raise err from None
        return wrapper
    return decorate


def _sweep_batch_sizes(fallback: Sequence[int]) -> list[int]:
    from pyphase.config import load_experiment

    sizes = set(fallback)
    for name in SWEEP_EXPERIMENTS:
        try:
            sizes |= {c.batch_size for c in load_experiment(name).configs}
        except PyphaseError:
            pass  # an experiment file missing from this install: its sizes are simply not listed
    return sorted(sizes)


def _reference_tokens() -> int | None:
    from pyphase.config import load_experiment

    try:
        exp = load_experiment(REFERENCE_EXPERIMENT)
    except PyphaseError:
        return None
    return sum(c.batch_size * c.model.block_size * c.steps for c in exp.configs)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    import platform

    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


@_one_line_on_oom("calibrating")
def calibrate(
    *,
    device: str = "auto",
    data: str | Path | None = None,
    out: str | Path | None = None,
    shape: str = "default",
    batch_sizes: Sequence[int] = (32, 256),
    steps_along: Sequence[int] = (0, 200, 1000),
    lr: float = 3e-3,
    run_batch: int | None = None,
    repeats: int = 8,
    lanczos_iter: int = 24,
    probes: int = 16,
    hvp_batch: int = 32,
    top_k: int = 8,
    floor: str = "ngram3",
    fit_step: int | None = None,
    max_d: int = 1 << 20,
    seed: int = 0,
    progress: bool = True,
) -> Calibration:
    """Measure the NanoTransformer at initialisation and along a short AdamW run, fit the NQM, and
    write the calibration file to `out` (if given). See METHOD_NOTES for the methods.

    Cost per point: repeats·B_max windows through forward/backward (noise), one forward/backward
    with graph on hvp_batch windows plus lanczos_iter + probes HVPs (curvature); plus max(steps_along)
    training steps at run_batch (default: the smallest batch size)."""
    from tqdm.auto import tqdm

    from pyphase.config import RunConfig
    from pyphase.data import load_corpus
    from pyphase.model import NanoTransformer, Shape
    from pyphase.sweep import git_commit, resolve_device
    from pyphase.train import PackTrainer

    sizes = sorted(int(b) for b in batch_sizes)
    steps = sorted(int(s) for s in steps_along)
    run_batch = int(run_batch) if run_batch is not None else min(sizes) if sizes else 1
    fit_step = steps[-1] if fit_step is None and steps else fit_step
    _check_options(shape, sizes, steps, lr, run_batch, repeats, lanczos_iter, probes, hvp_batch, top_k, floor,
                   -1 if fit_step is None else fit_step, max_d)
    _check_seed(seed)
    _check_run_length(steps[-1] if steps else 0, run_batch, "--steps-along")
    check_out_file(out)
    assert fit_step is not None
    t_start = time.perf_counter()
    dev = torch.device(resolve_device(device))
    corpus = load_corpus(data)
    ms = SHAPES[shape]
    sh = Shape.of(ms, corpus.tokenizer.vocab_size)
    t_len = sh.block_size
    train_ids = np.ascontiguousarray(corpus.train)
    # windows from the train split; the short run of steps_along (PackTrainer) evaluates on the valid split
    corpus.check_windows(t_len, ("train", "valid") if steps and steps[-1] > 0 else ("train",))
    windows = _Windows(torch.from_numpy(train_ids.astype(np.int64)).to(dev), len(train_ids), t_len)
    micro = math.gcd(*sizes)
    n_draws = repeats * (max(sizes) // micro)
    noise_stream, hvp_stream = CALIB_STREAM + 2 * seed, CALIB_STREAM + 2 * seed + 1
    hvp_off = windows.offsets(hvp_stream, hvp_batch, 0, 1)[0]
    n_steps = steps[-1]
    cfg = RunConfig(experiment="calibrate", batch_size=run_batch, lr=lr, gradient_clip=RUN_CLIP, seed=seed,
                    steps=max(n_steps, 1), model=ms, eval_windows=1, eval_interval=max(n_steps, 1))
    trainer = PackTrainer([cfg], corpus, str(dev), compile=False, cuda_graph=False) if n_steps > 0 else None
    model = NanoTransformer(sh, seed=seed).to(dev)
    n_params = sh.n_params
    report_sizes = _sweep_batch_sizes(sizes)

    per_point = n_draws + lanczos_iter + probes
    bar = tqdm(total=n_steps + len(steps) * per_point, disable=not progress, unit="pass", desc="calibrate",
               leave=False)
    points: list[PointMeasurement] = []
    wall_train = 0.0
    done = 0
    for idx, step in enumerate(steps):
        t0 = time.perf_counter()
        if trainer is not None:
            for _ in range(step - done):
                trainer.step()
                bar.update(1)
            done = step
            _sync(dev)
            with torch.no_grad():
                for name, _ in sh.param_shapes():
                    model.p(name).copy_(trainer.model.view(name, trainer.model.flat)[0])
        t1 = time.perf_counter()
        wall_train += t1 - t0
        points.append(_measure_point(step, idx, model, windows, noise_offsets=windows.offsets(
            noise_stream, micro, idx * n_draws, n_draws), hvp_offsets=hvp_off, batch_sizes=sizes, repeats=repeats,
            lanczos_iter=lanczos_iter, probes=probes, top_k=top_k, report_sizes=report_sizes, seed=seed, bar=bar))
        if trainer is not None and step > 0:
            points[-1].optimizer_state = optimizer_view(trainer.state.m[0], trainer.state.v[0], step, cfg.betas,
                                                        cfg.eps)
        points[-1].timings["train_s"] = t1 - t0
    bar.close()

    run = _run_record(trainer, cfg, n_steps)
    floor_est = _floor(floor, train_ids, run)
    fp = next(p for p in points if p.step == fit_step)
    use = [e for e, r in zip(fp.eigenvalues, fp.eigen_residuals) if e > 0 and r <= RITZ_TOL * e]
    if len(use) < 2:
        use = [e for e in fp.eigenvalues if e > 0][:2]
    init_loss = points[0].loss
    try:
        g0 = points[0].noise.grad_norm2
        fit = fit_nqm(use, fp.hessian_trace, fp.noise.trace_sigma, init_loss, floor_est.value,
                      g0 if g0 > 0 else None, max_d=max_d)
    except ValueError as e:
        raise PyphaseError(f"cannot fit the NQM at step {fit_step}: {e}") from None
    consistency = _consistency(fit, points, fp, report_sizes, n_params)

    window_tokens = t_len
    noise_tokens = sum(p.counts["noise_windows"] for p in points) * window_tokens
    graph_tokens = len(points) * hvp_batch * window_tokens
    n_hvp_total = sum(p.counts["hvp"] for p in points)
    hvp_tokens = n_hvp_total * hvp_batch * window_tokens
    train_tokens = n_steps * run_batch * window_tokens
    equiv = train_tokens + noise_tokens + graph_tokens + HVP_COST * hvp_tokens
    ref = _reference_tokens()
    wall = time.perf_counter() - t_start
    budget = {
        "train_tokens": train_tokens, "gradient_tokens": noise_tokens, "hvp_graph_tokens": graph_tokens,
        "hvp_products": n_hvp_total, "hvp_tokens": hvp_tokens, "hvp_cost_factor": HVP_COST,
        "fwd_bwd_equivalent_tokens": equiv, "reference_experiment": REFERENCE_EXPERIMENT,
        "reference_tokens": ref, "fraction_of_reference": (equiv / ref) if ref else None,
        "wall_s": wall, "wall_train_s": wall_train,
        "wall_noise_s": sum(p.timings["noise_s"] for p in points),
        "wall_curvature_s": sum(p.timings["curvature_s"] for p in points),
    }
    provenance = {
        "label": f"pyphase calibrate, shape {shape}, corpus {corpus.name}",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": _device_name(dev),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "data": {"name": corpus.name, "source": corpus.source, "sha256": corpus.sha256,
                 "vocab_size": corpus.tokenizer.vocab_size, "train_tokens": len(train_ids)},
        "shape": {"name": shape, **ms.__dict__, "vocab_size": sh.vocab_size, "n_params": n_params},
        "options": {"batch_sizes": sizes, "steps_along": steps, "lr": lr, "run_batch": run_batch,
                    "run_clip": RUN_CLIP, "repeats": repeats, "lanczos_iter": lanczos_iter, "probes": probes,
                    "hvp_batch": hvp_batch, "top_k": top_k, "floor": floor, "fit_step": fit_step, "max_d": max_d,
                    "seed": seed},
        "wall_s": wall,
    }
    cal = Calibration(fit=fit, points=points, fit_step=fit_step, floor=floor_est, run=run,
                      consistency=consistency, budget=budget, provenance=provenance)
    if out is not None:
        cal.path = Path(out)
        cal.params = write_calibration(cal, cal.path)
    return cal


def _measure_point(step: int, idx: int, model: NanoTransformer, windows: _Windows, *, noise_offsets: Tensor,
                   hvp_offsets: Tensor, batch_sizes: Sequence[int], repeats: int, lanczos_iter: int, probes: int,
                   top_k: int, report_sizes: Sequence[int], seed: int, bar: Any) -> PointMeasurement:
    """Noise (fresh windows from `noise_offsets`) and curvature (the fixed `hvp_offsets` batch) of
    `model` as it is now."""
    dev = windows.tokens.device
    params = _params(model)
    n_params = sum(p.numel() for p in params)
    gids = _group_ids(model.shape, dev)
    t1 = time.perf_counter()
    bar.set_postfix_str(f"step {step}: noise")
    tick = lambda: bar.update(1)
    meas = measure_noise(_grad_fn(model, windows, noise_offsets, tick), batch_sizes, repeats, gids, GROUPS)
    _sync(dev)
    t2 = time.perf_counter()
    bar.set_postfix_str(f"step {step}: curvature")
    x, y = windows.gather(hvp_offsets)
    with _sdpa_math():
        _, loss = model(x, y)
        hvp_raw = hvp_closure(loss, params)

        def hvp(v: Tensor) -> Tensor:
            tick()
            return hvp_raw(v)

        # probes depend on (seed, point) only, so a rerun draws the same ones
        gen = torch.Generator().manual_seed(1_000_003 * seed + idx)
        lz = lanczos(hvp, n_params, lanczos_iter, generator=gen, device=dev)
        tr = hutchinson_trace(hvp, n_params, probes, generator=gen, device=dev, deflate=lz)
        g_hat = meas.mean_grad
        grad_curv = float(torch.dot(g_hat, hvp_raw(g_hat)) / torch.dot(g_hat, g_hat))
    bar.update(lanczos_iter - lz.n_hvp)  # Lanczos may stop early on an invariant subspace
    _sync(dev)
    t3 = time.perf_counter()
    noise = meas.noise
    group_sizes = torch.bincount(gids, minlength=len(GROUPS)).tolist()
    return PointMeasurement(
        step=step,
        loss=meas.loss,
        loss_se=meas.loss_se,
        noise=noise,
        sq_norms=meas.sq_norms.tolist(),
        grad_norm_by_batch={b: noise.expected_norm(b) for b in report_sizes},
        eigenvalues=[float(v) for v in lz.ritz[:top_k]],
        eigen_residuals=[float(v) for v in lz.residual[:top_k]],
        lambda_min=float(lz.ritz[-1]),
        grad_curvature=grad_curv,
        hessian_trace=tr.trace,
        hessian_trace_se=tr.se,
        groups={g: {"grad_norm2": meas.groups[g][0], "trace_sigma": meas.groups[g][1], "n_params": int(n)}
                for g, n in zip(GROUPS, group_sizes)},
        adamw_view=adamw_view(meas.coord_signal, meas.coord_noise, report_sizes),
        optimizer_state=None,
        timings={"noise_s": t2 - t1, "curvature_s": t3 - t2},
        counts={"noise_passes": meas.passes, "noise_windows": meas.examples, "hvp": lz.n_hvp + tr.n_probes + 1,
                "lanczos_steps": lz.n_hvp, "hutchinson_probes": tr.n_probes, "hvp_windows": len(hvp_offsets)},
    )


def _run_record(trainer: Any, cfg: Any, n_steps: int) -> dict[str, Any]:
    """The short run's own telemetry (its train loss curve feeds the 'fit' floor)."""
    if trainer is None:
        return {"steps": 0}
    st = trainer.state
    loss = st.loss[:n_steps, 0].double().cpu().numpy()
    norm = st.norm_before[:n_steps, 0].double().cpu().numpy()
    clipped = st.clipped[:n_steps, 0].double().cpu().numpy()
    return {"steps": n_steps, "lr": cfg.lr, "batch_size": cfg.batch_size, "clip": cfg.gradient_clip,
            "optimizer": cfg.optimizer, "betas": list(cfg.betas), "eps": cfg.eps, "weight_decay": cfg.weight_decay,
            "precision": "bf16" if trainer.amp else "fp32",
            "diverged": int(st.diverged_step[0]) >= 0,
            "clip_frequency": float(clipped.mean()), "grad_norm_mean": float(np.nanmean(norm)),
            "grad_norm_first": float(norm[0]), "grad_norm_last": float(norm[-1]),
            "train_loss": loss.tolist()}


def _floor(method: str, train_ids: np.ndarray, run: dict[str, Any]) -> FloorEstimate:
    ent = ngram_entropies(train_ids, 4)
    losses = np.asarray(run.get("train_loss", []), dtype=np.float64)
    pl = power_law_floor(np.arange(1, len(losses) + 1), losses) if len(losses) else {}
    if method == "fit":
        if not pl:
            raise PyphaseError("--floor fit: the short run's loss curve could not be fitted (too few steps?); "
                               "use --floor ngram3")
        value = pl["L_inf"]
    else:
        value = ent[int(method.removeprefix("ngram")) - 1]
    return FloorEstimate(method=method, value=float(value), ngram_entropies=ent, power_law=pl)


def _consistency(fit: NQMFit, points: list[PointMeasurement], fp: PointMeasurement,
                 report_sizes: Sequence[int], n_params: int) -> dict[str, Any]:
    """The fitted NQM's closed forms next to the measurements they were (or were not) fitted to."""
    mom = fit.moments(len(fp.eigenvalues))
    init = points[0]
    return {
        "nqm": mom,
        "measured_at_fit_step": {"top_eigenvalues": fp.eigenvalues, "hessian_trace": fp.hessian_trace,
                                 "trace_sigma": fp.noise.trace_sigma, "grad_norm2": fp.noise.grad_norm2,
                                 "b_simple": fp.noise.b_simple},
        "measured_grad_norm2_at_init": init.noise.grad_norm2,
        # A quadratic with the curvature h_G felt along G drops by |G|²/(2h_G) along it: compare with
        # the loss gap the NQM is given (init_loss − floor) to see whether the quadratic picture holds.
        "init_grad_curvature": init.grad_curvature,
        "init_quadratic_loss_gap": init.noise.grad_norm2 / (2 * init.grad_curvature)
        if init.grad_curvature > 0 else None,
        "nqm_loss_gap": fit.init_loss - fit.loss_floor,
        "grad_norm2_init_ratio_nqm_over_measured": mom["grad_norm2"] / init.noise.grad_norm2
        if init.noise.grad_norm2 > 0 else None,
        "nqm_grad_norm_by_batch": {str(b): math.sqrt(mom["grad_norm2"] + mom["trace_sigma"] / b) for b in report_sizes},
        "nqm_adamw_view": nqm_adamw_view(fit, report_sizes),
        # AdamW moves every coordinate by ~lr·(its normalised update), so the step length per unit LR
        # is update_rms·sqrt(#coordinates): compare the real run's with the NQM's bound sqrt(d) (update
        # RMS 1 for clean signal). A large ratio means the NQM's LR is not in the real model's units.
        "adamw_step_per_lr_measured": fp.optimizer_state["update_rms"] * math.sqrt(n_params)
        if fp.optimizer_state else None,
        "adamw_step_per_lr_nqm_max": math.sqrt(fit.d),
    }


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def to_params(cal: Calibration) -> Any:
    """The calibration as `pyphase.nqm.NQMParams` (the one calibration-file format): the fitted
    fields, and in `provenance` the source, the measurements, the method notes and the cost."""
    from pyphase.nqm import NQMParams

    fit = cal.fit
    prov: dict[str, Any] = {
        "source": "calibration",
        "description": (f"measured by `pyphase calibrate` on the NanoTransformer ({cal.provenance['shape']['name']} "
                        f"shape) on {cal.provenance['data']['name']}, {cal.provenance['device']}"),
        **cal.provenance,
        "measurements": cal.measurements(),
    }
    return NQMParams(**{k: getattr(fit, k) for k in NQM_FIELDS}, provenance=_jsonable(prov))


def write_calibration(cal: Calibration, path: Path) -> Any:
    """Write the calibration file with `NQMParams.save`; returns the NQMParams written."""
    params = to_params(cal)
    params.save(path)
    return params


def format_table(cal: Calibration) -> str:
    """The calibration for people: one row per measured point, then the fit, its checks and the cost."""
    sizes = sorted(int(b) for b in cal.points[0].grad_norm_by_batch)

    def pm(v: float, e: float, fmt: str = ".4g") -> str:
        return f"{v:{fmt}} ± {e:.2g}"

    head = ["step", "loss", "|G|^2", "tr(Sigma)", "B_simple", "lambda_1..3", "tr(H)", "h_G",
            *[f"|g|@{b}" for b in sizes], "adam upd rms"]
    rows = []
    for p in cal.points:
        n = p.noise
        rows.append([str(p.step), pm(p.loss, p.loss_se), pm(n.grad_norm2, n.grad_norm2_se),
                     pm(n.trace_sigma, n.trace_sigma_se), pm(n.b_simple, n.b_simple_se),
                     ", ".join(f"{e:.3g}" for e in p.eigenvalues[:3]), pm(p.hessian_trace, p.hessian_trace_se),
                     f"{p.grad_curvature:.3g}", *[f"{p.grad_norm_by_batch[b]:.3g}" for b in sizes],
                     f"{p.optimizer_state['update_rms']:.3g}" if p.optimizer_state else "-"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    f, c, b = cal.fit, cal.consistency, cal.budget
    lines += [
        "",
        (f"NQM fit at step {cal.fit_step}: d = {f.d}, h_max = {f.h_max:.4g}, alpha = {f.alpha:.4g}, "
         f"sigma2 = {f.sigma2:.4g}, init_loss = {f.init_loss:.4g}, loss_floor = {f.loss_floor:.4g} "
         f"({cal.floor.method}), init_power = {f.init_power:.4g}"),
        f"  spectrum misfit (RMS log, top {f.n_eigs_used} eigenvalues) = {f.top_eig_log_rms:.3g}; "
        f"trace matched: {f.trace_matched}" + "".join(f"; {n}" for n in f.notes),
        f"  |G|^2 at init: NQM {c['nqm']['grad_norm2']:.4g} vs measured {c['measured_grad_norm2_at_init']:.4g}; "
        f"loss gap: NQM {c['nqm_loss_gap']:.4g} vs quadratic along G "
        + (f"{c['init_quadratic_loss_gap']:.4g}" if c["init_quadratic_loss_gap"] is not None else "n/a"),
        (f"  AdamW step per unit LR at step {cal.fit_step}: measured "
         + (f"{c['adamw_step_per_lr_measured']:.4g}" if c["adamw_step_per_lr_measured"] is not None else "n/a")
         + f" (update RMS x sqrt(#params)) vs NQM <= {c['adamw_step_per_lr_nqm_max']:.4g} (sqrt(d))"),
        "  n-gram entropies (nats/token, orders 1-4): " + ", ".join(f"{h:.4g}" for h in cal.floor.ngram_entropies)
        + (f"; power-law L_inf = {cal.floor.power_law['L_inf']:.4g} ± {cal.floor.power_law['L_inf_se']:.2g}"
           if cal.floor.power_law else ""),
        f"Cost: {b['wall_s']:.1f} s on {cal.provenance['device']} (train {b['wall_train_s']:.1f} s, noise "
        f"{b['wall_noise_s']:.1f} s, curvature {b['wall_curvature_s']:.1f} s); "
        f"{b['fwd_bwd_equivalent_tokens']:.3g} fwd/bwd-equivalent tokens"
        + (f" = {100 * b['fraction_of_reference']:.3g}% of a {b['reference_experiment']} sweep"
           if b["fraction_of_reference"] is not None else ""),
    ]
    if cal.path is not None:
        lines.append(f"Calibration written to {cal.path}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- scale invariance (radial part)

#: Parameter leaves that write into the residual stream. Scaling all of them by c scales the residual
#: stream by c at every layer; each pre-LN block and the final LayerNorm divide it out, so the loss does
#: not change (up to LayerNorm's eps): together they are scale-invariant, and their gradient is
#: orthogonal to them and scales as 1/|w|.
RESIDUAL_WRITERS = ("wte", "wpe", "proj_w", "proj_b", "fc2_w", "fc2_b")
#: Factors the invariance check scales the group by.
INVARIANCE_FACTORS = (0.5, 2.0, 8.0)


def scale_invariant_names(shape: Shape) -> list[str]:
    """Names of the scale-invariant group (see RESIDUAL_WRITERS) in `shape`'s parameter order."""
    return [n for n, _ in shape.param_shapes() if n.split(".")[-1] in RESIDUAL_WRITERS]


@dataclass(frozen=True)
class ScaleInvariance:
    """The radial part's inputs measured on the real model, and the checks behind them."""

    si_params: int  # parameters in the scale-invariant group
    n_params: int
    si_init_norm: float  # |w_si(0)|
    init_norm: float  # |w(0)| of all parameters (what the sweeps log as weight_norm)
    invariance: dict[str, float]  # factor -> |L(c·w_si) − L(w)| / L(w) on a fixed batch
    rest_sensitivity: dict[str, float]  # the same with the other parameters scaled instead (a control)
    grad_share: float  # |G_si|² / |G|² at initialisation (two-batch estimator, per coordinate)
    trace_sigma_share: float  # tr(Σ_si) / tr(Σ) at initialisation
    noise: dict[str, Any]  # |G|², tr Σ per group and the estimator's batch sizes / repeats
    run: dict[str, Any]  # short AdamW run: update RMS (si and all), |w_si| growth per step
    growth: dict[str, Any] | None = None  # runs at several LRs and the fitted law coef·lr^power


def _flat_norm(tensors: Sequence[Tensor]) -> float:
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)))


def measure_scale_invariance(model: NanoTransformer, windows: _Windows, *, batch_sizes: Sequence[int],
                             repeats: int, steps: int, lr: float, run_batch: int, seed: int,
                             growth_lrs: Sequence[float] = (), weight_decay: float = 0.01,
                             betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                             progress: Callable[[], None] = lambda: None) -> ScaleInvariance:
    """Measure the scale-invariant group of `model` (at its current weights, normally the init):

    - invariance: the loss on one fixed batch with the group scaled by each INVARIANCE_FACTORS (and,
      as a control, with every other parameter scaled instead);
    - its size and norm; its share of |G|² and tr(Σ) (the two-batch estimator of `measure_noise`
      with a per-coordinate split);
    - `steps` AdamW steps at `lr`, batch `run_batch`, clip RUN_CLIP: the RMS over the group's
      coordinates of AdamW's normalised update m̂/(sqrt(v̂)+ε) at the last step, and how |w_si|² grew
      per step against the spherical-motion estimate lr²·(update RMS)²·si_params;
    - the growth law: the same run (same batches, from the same initial weights) at every lr of
      `growth_lrs`, |w_si|² growth per step averaged over the run, fitted as coef·lr^power by least
      squares in log-log (`growth` in the result; None without `growth_lrs`).
    The model's weights are restored afterwards."""
    sh = model.shape
    names = scale_invariant_names(sh)
    params = dict(zip([n for n, _ in sh.param_shapes()], _params(model)))
    si = [params[n] for n in names]
    rest = [p for n, p in params.items() if n not in names]
    saved = {n: p.detach().clone() for n, p in params.items()}
    n_si = sum(p.numel() for p in si)
    n_all = sum(p.numel() for p in params.values())
    init_si, init_all = _flat_norm(si), _flat_norm(list(params.values()))
    dev = windows.tokens.device

    x, y = windows.gather(windows.offsets(CALIB_STREAM + 2 * seed + 1, 32, 1, 1)[0])

    def loss_with(group: Sequence[Tensor], c: float) -> float:
        with torch.no_grad():
            for p in group:
                p.mul_(c)
            loss = float(model(x, y)[1])
            for p in group:
                p.div_(c)
        return loss

    with torch.no_grad():
        base = float(model(x, y)[1])
    inv = {f"{c:g}": abs(loss_with(si, c) - base) / base for c in INVARIANCE_FACTORS}
    ctrl = {f"{c:g}": abs(loss_with(rest, c) - base) / base for c in INVARIANCE_FACTORS}

    ids = torch.cat([torch.full((p.numel(),), 0 if n in names else 1, dtype=torch.int64)
                     for n, p in params.items()]).to(dev)
    micro = math.gcd(*batch_sizes)
    n_draws = repeats * (max(batch_sizes) // micro)
    offs = windows.offsets(CALIB_STREAM + 2 * seed, micro, 0, n_draws)
    meas = measure_noise(_grad_fn(model, windows, offs, progress), batch_sizes, repeats, ids, ("si", "rest"))
    g_si, s_si = meas.groups["si"]
    g_rest, s_rest = meas.groups["rest"]

    # Short AdamW runs (torch.optim.AdamW, as the trainer steps it) from these weights, one per
    # learning rate, all on the same batches so that only the LR differs between them.
    run_offs = windows.offsets(CALIB_STREAM + 2 * seed + 2, run_batch, 0, max(steps, 1))

    def adamw_run(run_lr: float) -> tuple[Any, list[float], list[float]]:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
        opt = torch.optim.AdamW(list(params.values()), lr=run_lr, betas=betas, eps=eps, weight_decay=weight_decay)
        norms, norms_all = [init_si], [init_all]
        for t in range(steps):
            xb, yb = windows.gather(run_offs[t])
            opt.zero_grad(set_to_none=True)
            _, loss = model(xb, yb)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), RUN_CLIP)
            opt.step()
            norms.append(_flat_norm(si))
            norms_all.append(_flat_norm(list(params.values())))
            progress()
        return opt, norms, norms_all

    growth_runs: list[dict[str, Any]] = []
    for g_lr in sorted({float(x) for x in growth_lrs} - {float(lr)}):
        _, g_norms, g_all = adamw_run(g_lr)
        growth_runs.append({"lr": g_lr, "si_norm": g_norms, "all_norm": g_all})
    opt, norms, norms_all = adamw_run(lr)
    run: dict[str, Any] = {"steps": steps, "lr": lr, "batch_size": run_batch, "clip": RUN_CLIP,
                           "weight_decay": weight_decay, "si_norm": norms, "all_norm": norms_all}
    growth: dict[str, Any] | None = None
    if growth_lrs and steps > 0:
        if float(lr) in {float(x) for x in growth_lrs}:
            growth_runs.append({"lr": float(lr), "si_norm": norms, "all_norm": norms_all})
        growth_runs.sort(key=lambda r: r["lr"])
        half = steps // 2
        for r in growth_runs:
            n2, a2 = np.square(r["si_norm"]), np.square(r["all_norm"])
            # Mean growth per step over the whole run (what the law uses) and over its second half
            # (after Adam's first coherent steps), and the same for all weights (what sweeps log).
            r.update(si_norm2_growth_per_step=float((n2[-1] - n2[0]) / steps),
                     si_norm2_growth_per_step_late=float((n2[-1] - n2[half]) / (steps - half)),
                     all_norm2_growth_per_step=float((a2[-1] - a2[0]) / steps))
        growth = {"steps": steps, "batch_size": run_batch, "clip": RUN_CLIP, "weight_decay": weight_decay,
                  "runs": growth_runs, **fit_growth_law([r["lr"] for r in growth_runs],
                                                        [r["si_norm2_growth_per_step"] for r in growth_runs])}
    if steps > 0:
        def update_rms(group: Sequence[Tensor]) -> float:
            tot, n = 0.0, 0
            for p in group:
                st = opt.state[p]
                k = int(st["step"])
                mh = st["exp_avg"].double() / (1 - betas[0] ** k)
                vh = st["exp_avg_sq"].double() / (1 - betas[1] ** k)
                tot += float((mh / (vh.sqrt() + eps)).square().sum())
                n += p.numel()
            return math.sqrt(tot / n)

        u_si = update_rms(si)
        grown = (norms[-1] ** 2 - norms[0] ** 2) / steps
        run.update(update_rms_si=u_si, update_rms_all=update_rms(list(params.values())),
                   si_norm2_growth_per_step=grown,
                   spherical_estimate_per_step=lr ** 2 * u_si ** 2 * n_si)
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    return ScaleInvariance(
        si_params=n_si, n_params=n_all, si_init_norm=init_si, init_norm=init_all, invariance=inv,
        rest_sensitivity=ctrl, grad_share=g_si / (g_si + g_rest), trace_sigma_share=s_si / (s_si + s_rest),
        noise={"batch_sizes": list(batch_sizes), "repeats": repeats, "grad_norm2": meas.noise.grad_norm2,
               "trace_sigma": meas.noise.trace_sigma, "grad_norm2_si": g_si, "grad_norm2_rest": g_rest,
               "trace_sigma_si": s_si, "trace_sigma_rest": s_rest, "loss": meas.loss},
        run=run, growth=growth,
    )


def fit_growth_law(lrs: Sequence[float], growth: Sequence[float]) -> dict[str, Any]:
    """Least-squares fit of log(growth) = log(coef) + power·log(lr): {"coef", "power", "residual_rms"}
    (residual in natural-log units). Needs two or more distinct LRs and positive growth (a PyphaseError
    otherwise: |w_si|² that does not grow has no power law)."""
    x, y = np.asarray(lrs, dtype=float), np.asarray(growth, dtype=float)
    if len(set(x.tolist())) < 2:
        raise PyphaseError(f"--radial-lrs: the growth law needs two or more distinct learning rates, got {sorted(set(x.tolist()))}")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise PyphaseError(f"|w_si|^2 did not grow at every learning rate ({', '.join(f'{v:.3g}' for v in y)} per step): "
                           "no growth law to fit")
    power, logc = np.polyfit(np.log(x), np.log(y), 1)
    res = np.log(y) - (logc + power * np.log(x))
    return {"coef": float(np.exp(logc)), "power": float(power), "residual_rms": float(np.sqrt(np.mean(res ** 2)))}


#: Largest relative loss change under scaling that still counts as invariant (LayerNorm's eps and
#: float32 rounding make it nonzero).
INVARIANCE_TOL = 1e-3


@_one_line_on_oom("measuring the scale-invariant weights")
def add_scale_invariance(base: str | Path, *, device: str = "cpu", data: str | Path | None = None,
                         out: str | Path | None = None, batch_sizes: Sequence[int] = (32, 256), repeats: int = 4,
                         steps: int = 50, lr: float = 3e-3, run_batch: int | None = None, seed: int = 0,
                         growth_lrs: Sequence[float] = (), progress: bool = True) -> tuple[Any, ScaleInvariance]:
    """`pyphase calibrate --radial-base FILE`: measure the scale-invariant group on the model the
    calibration `base` describes (its shape and seed, at initialisation) and write `base` plus the
    radial fields (`pyphase.nqm` version 2) to `out`. Returns (NQMParams, ScaleInvariance).

    si_fraction = the measured share of |G|² at initialisation carried by the group; si_params and
    si_init_norm = its size and norm. With `growth_lrs` (two or more LRs) the file also gets the growth
    law si_growth_coef·lr^si_growth_power fitted to short AdamW runs at those LRs (format version 3);
    without, it is version 2 as before. Nothing from any sweep is read."""
    from tqdm.auto import tqdm

    from pyphase.data import load_corpus
    from pyphase.model import NanoTransformer, Shape
    from pyphase.nqm import NQMParams
    from pyphase.sweep import git_commit, resolve_device

    params = NQMParams.load(base)
    sizes = sorted(int(b) for b in batch_sizes)
    run_batch = int(run_batch) if run_batch is not None else sizes[0] if sizes else 1
    if len(set(sizes)) < 2 or min(sizes) < 1 or any(max(sizes) % b for b in sizes):
        raise PyphaseError(f"--batch: need two distinct batch sizes >= 1, each dividing the largest, got {sizes}")
    _check_largest_batch(sizes)
    for name, v, lo, hi in (("--repeats", repeats, 2, MAX_COUNTS["--repeats"]),
                            ("--radial-steps", steps, 1, MAX_STEPS_ALONG),
                            ("--run-batch", run_batch, 1, MAX_BATCH_SIZE)):
        check_int(v, name, minimum=lo, maximum=hi)
    if repeats * max(sizes) > MAX_NOISE_WINDOWS:
        raise PyphaseError(f"--repeats x the largest --batch: {repeats:,} x {max(sizes):,} = "
                           f"{repeats * max(sizes):,} noise windows, at most {MAX_NOISE_WINDOWS:,}")
    _check_run_length(steps, run_batch, "--radial-steps")
    _check_lr(lr, "--lr")
    _check_seed(seed)
    # the model's seed comes from the file (what it was calibrated with): checked as --seed is
    file_seed = (params.provenance.get("options") or {}).get("seed", seed)
    if isinstance(file_seed, bool) or not isinstance(file_seed, int) or not 0 <= file_seed <= MAX_SEED:
        raise PyphaseError(f"{base}: provenance.options.seed must be an integer in 0..{MAX_SEED}, got "
                           f"{shown(file_seed, quote=True)}")
    check_out_file(out)
    growth_lrs = [float(x) for x in growth_lrs]
    bad = [x for x in growth_lrs if not (math.isfinite(x) and x > 0)]
    if bad:
        raise PyphaseError(f"--radial-lrs: learning rates must be positive numbers, got {bad[0]}")
    for x in growth_lrs:
        _check_lr(x, "--radial-lrs")
    if growth_lrs and len(set(growth_lrs)) < 2:
        raise PyphaseError(f"--radial-lrs: the growth law needs two or more distinct learning rates, got {growth_lrs}")
    shape_info = params.provenance.get("shape") or {}
    name = shape_info.get("name", "default")
    if name not in SHAPES:
        raise PyphaseError(f"{base}: provenance.shape.name {name!r} is not one of {', '.join(SHAPES)}")
    seed = file_seed
    t0 = time.perf_counter()
    dev = torch.device(resolve_device(device))
    corpus = load_corpus(data)
    sha = (params.provenance.get("data") or {}).get("sha256")
    if sha and sha != corpus.sha256:
        raise PyphaseError(f"--data: corpus sha256 {corpus.sha256[:12]}… differs from the calibration's {sha[:12]}…")
    sh = Shape.of(SHAPES[name], corpus.tokenizer.vocab_size)
    corpus.check_windows(sh.block_size, ("train",))
    train_ids = np.ascontiguousarray(corpus.train)
    windows = _Windows(torch.from_numpy(train_ids.astype(np.int64)).to(dev), len(train_ids), sh.block_size)
    model = NanoTransformer(sh, seed=seed).to(dev)
    total = repeats * (max(sizes) // math.gcd(*sizes)) + steps * len(set(growth_lrs) | {lr})
    bar = tqdm(total=total, disable=not progress, unit="pass", desc="scale invariance", leave=False)
    si = measure_scale_invariance(model, windows, batch_sizes=sizes, repeats=repeats, steps=steps, lr=lr,
                                  run_batch=run_batch, seed=seed, growth_lrs=growth_lrs,
                                  progress=lambda: bar.update(1))
    bar.close()
    worst = max(si.invariance.values())
    if worst > INVARIANCE_TOL:
        raise PyphaseError(f"the residual-writer group is not scale-invariant on this model: relative loss change "
                           f"{worst:.3g} > {INVARIANCE_TOL:g}")
    radial_prov = {
        "description": ("radial (scale-invariance) inputs measured by `pyphase calibrate --radial-base` on the "
                        f"model at initialisation (shape {name}, seed {seed}) on {_device_name(dev)}, AFTER the "
                        "sweeps; no sweep outcome read. The other NQM fields are the base file's."),
        "base": str(base),
        "device": _device_name(dev),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "data_sha256": corpus.sha256,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": time.perf_counter() - t0,
        "group": list(RESIDUAL_WRITERS),
        "measurements": _jsonable(si.__dict__),
        "method": ("si_fraction = |G_si|^2/|G|^2 at init from the per-coordinate two-batch estimator; "
                   "si_params = size of the residual-writer group; si_init_norm = its norm at init; "
                   "invariance checked by scaling the group on a fixed batch (tolerance "
                   f"{INVARIANCE_TOL:g} relative)."
                   + (" si_growth_coef, si_growth_power: least-squares fit in log-log of the mean |w_si|^2 growth "
                      "per step of short AdamW runs (same batches, from the initial weights) at the learning rates "
                      f"{', '.join(f'{x:g}' for x in sorted(set(growth_lrs)))}, {steps} steps each, B {run_batch}, clip "
                      f"{RUN_CLIP:g}; the simulator applies it at every step." if growth_lrs else "")),
    }
    prov = {k: v for k, v in params.provenance.items() if k != "path"}
    prov.update(source=f"{params.source}+radial", radial=radial_prov)
    law = ({"si_growth_coef": float(si.growth["coef"]), "si_growth_power": float(si.growth["power"])}
           if si.growth is not None else {})
    new = NQMParams(**{k: getattr(params, k) for k in NQM_FIELDS}, si_fraction=float(si.grad_share),
                    si_params=float(si.si_params), si_init_norm=float(si.si_init_norm), **law, provenance=prov)
    if out is not None:
        new.save(out)
    return new, si


def format_scale_invariance(params: Any, si: ScaleInvariance) -> str:
    """The radial measurement for people."""
    r = si.run
    lines = [
        (f"scale-invariant group ({', '.join(RESIDUAL_WRITERS)}): {si.si_params:,} of {si.n_params:,} parameters, "
         f"|w_si(0)| = {si.si_init_norm:.4g} (all weights {si.init_norm:.4g})"),
        "  invariance (relative loss change when the group is scaled by c): "
        + ", ".join(f"c={c}: {v:.2g}" for c, v in si.invariance.items())
        + "; control, the other parameters scaled: " + ", ".join(f"c={c}: {v:.2g}" for c, v in si.rest_sensitivity.items()),
        f"  share at init: |G|^2 {si.grad_share:.3f}, tr(Sigma) {si.trace_sigma_share:.3f}",
    ]
    if "update_rms_si" in r:
        lines.append(
            f"  {r['steps']} AdamW steps at lr {r['lr']:g}, B {r['batch_size']}: update RMS {r['update_rms_si']:.3g} "
            f"(si), {r['update_rms_all']:.3g} (all); |w_si|^2 grew {r['si_norm2_growth_per_step']:.3g}/step "
            f"against lr^2 u^2 si_params = {r['spherical_estimate_per_step']:.3g}/step")
    if si.growth is not None:
        g = si.growth
        lines.append(f"  |w_si|^2 growth per step over {g['steps']} steps (B {g['batch_size']}): "
                     + ", ".join(f"lr {r['lr']:g}: {r['si_norm2_growth_per_step']:.3g} "
                                 f"(second half {r['si_norm2_growth_per_step_late']:.3g}; all weights "
                                 f"{r['all_norm2_growth_per_step']:.3g})" for r in g["runs"])
                     + f"; fit {g['coef']:.4g}·lr^{g['power']:.3f} (log residual RMS {g['residual_rms']:.3f})")
    lines.append(f"NQM radial part: si_fraction = {params.si_fraction:.4g}, si_params = {params.si_params:.6g}, "
                 f"si_init_norm = {params.si_init_norm:.4g}"
                 + (f", |w_si|^2 growth {params.si_growth_coef:.4g}·lr^{params.si_growth_power:.3f} per step"
                    if params.growth_law else ""))
    return "\n".join(lines)
