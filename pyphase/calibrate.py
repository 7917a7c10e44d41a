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
  trace, noise σ² with σ²·tr(H) = tr(Σ), initial loss and floor;
- `calibrate`: all of the above on the NanoTransformer at initialisation and at a few points of a
  short AdamW run, written as a calibration file with provenance.

An "example" is one training window of `block_size` tokens, the unit a sweep's batch size counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

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
    sq_sum: Tensor | None = None
    s1 = s2 = None  # running sums of micro gradients and their squares (per coordinate)
    g_sq = g_tr = None
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
    """Fitted NQM parameters (the fields of `pyphase.nqm.NQMParams`) and how well they fit."""

    d: int
    h_max: float
    alpha: float
    sigma2: float
    init_loss: float
    loss_floor: float
    top_eig_log_rms: float  # RMS of log(measured / fitted) over the top eigenvalues used
    n_eigs_used: int
    trace_matched: bool  # False only if d hit max_d before the trace was reached
    notes: tuple[str, ...] = ()

    def moments(self, k: int) -> dict[str, Any]:
        """Closed-form NQM quantities at θ(0) (isotropic start, θ_i = r with ½r²Σh = ΔL): the top-k
        eigenvalues, tr(H), tr(Σ) = σ²·tr(H), |G|² = |Hθ(0)|² = r²·Σh², B_simple."""
        return nqm_moments(self.d, self.h_max, self.alpha, self.sigma2, self.init_loss - self.loss_floor, k)


def nqm_moments(d: int, h_max: float, alpha: float, sigma2: float, delta_loss: float, k: int) -> dict[str, Any]:
    """See `NQMFit.moments`."""
    tr_h = h_max * spectrum_sum(alpha, d)
    sum_h2 = h_max ** 2 * spectrum_sum(alpha, d, power=2.0)
    r2 = 2.0 * delta_loss / tr_h
    g2 = r2 * sum_h2
    top = [h_max * i ** (-alpha) for i in range(1, min(k, d) + 1)]
    return {"top_eigenvalues": top, "hessian_trace": tr_h, "trace_sigma": sigma2 * tr_h,
            "grad_norm2": g2, "b_simple": sigma2 * tr_h / g2}


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
            loss_floor: float, *, max_d: int = 1 << 20) -> NQMFit:
    """Fit the NQM spectrum h_i = h_max·i^(-α), i = 1..d, and noise σ² to measurements.

    - h_max = the largest measured eigenvalue;
    - for every d (log grid from tr(H)/h_max, the fewest directions that can hold the trace, to
      max_d), α(d) makes Σh_i = tr(H) exactly; the (d, α) whose h_2..h_k best match the measured
      next eigenvalues (least squares in log) wins;
    - σ² = tr(Σ)/tr(H), so that Σ_i σ²h_i equals the measured per-example tr(Σ);
    - init_loss and loss_floor as given (θ(0) then follows from ½Σh_iθ_i² = init_loss − floor).
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
    h_max = float(eig[0])
    k = len(eig)
    notes: list[str] = []
    ratio = hessian_trace / h_max
    d_lo = max(k, math.ceil(ratio))
    trace_matched = d_lo <= max_d
    if not trace_matched:
        notes.append(f"tr(H)/h_max = {ratio:.4g} exceeds max_d = {max_d}: flat spectrum at d = max_d, trace not matched")
        d_lo = max_d
    ranks = np.log(np.arange(1, k + 1, dtype=np.float64))
    target = np.log(eig / h_max)

    def misfit(d: int) -> tuple[float, float]:
        a = _alpha_for_trace(ratio, d) if trace_matched else 0.0
        return float(np.sqrt(np.mean((target + a * ranks) ** 2))), a

    grid = sorted({int(round(x)) for x in np.geomspace(d_lo, max(d_lo, max_d), 64)})
    scores = [misfit(d) for d in grid]
    best = int(np.argmin([s for s, _ in scores]))
    # refine between the grid neighbours of the best point (the misfit is smooth in log d)
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    fine = sorted({int(round(x)) for x in np.geomspace(lo, hi, 33)})
    fine_scores = [misfit(d) for d in fine]
    j = int(np.argmin([s for s, _ in fine_scores]))
    d_best, (rms, alpha) = fine[j], fine_scores[j]
    if d_best in (grid[0], grid[-1]) and len(grid) > 1:
        notes.append(f"best d = {d_best} is at the edge of the search range [{grid[0]}, {grid[-1]}]")
    # σ² against the fitted spectrum's own trace, so Σσ²h_i = tr(Σ) even where the trace wasn't matched
    tr_fit = h_max * spectrum_sum(alpha, d_best)
    return NQMFit(d=d_best, h_max=h_max, alpha=alpha, sigma2=float(trace_sigma / tr_fit),
                  init_loss=float(init_loss), loss_floor=float(loss_floor), top_eig_log_rms=rms,
                  n_eigs_used=k, trace_matched=trace_matched, notes=tuple(notes))
