"""Measurement and comparison: LR_opt per batch size (grid minimum of the seed-mean final validation
loss, refined by a parabola in log10 LR, flagged at the grid edge), β and C of LR_opt = C·B^β with
R² and a 95% interval, the seed's naive grid-argmin β beside it, a check of the clip-norm telemetry,
and predicted-vs-measured scores against the linear, square-root and noise-scale rules.

Measured summaries and simulated trajectories go through the same functions: `prediction_summaries`
renames a prediction table into summary columns, so "LR_opt by parabola refinement" has one
implementation for both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from pyphase.errors import PyphaseError
from pyphase.results import json_safe
from pyphase.schema import PREDICTION_COLUMNS, REGIMES, regime_of

GROUP_KEYS = ["gradient_clip", "optimizer"]
CONFIG_KEYS = GROUP_KEYS + ["batch_size", "lr"]
CONFIDENCE = 0.95
# With fewer seeds per config than this, β's interval is the envelope of the seed bootstrap and the
# fit's t interval (see `_interval`).
MIN_BOOTSTRAP_SEEDS = 3
DEFAULT_BOOTSTRAP = 2000

# Issue 6's acceptance thresholds for a prediction.
BETA_TOLERANCE = 0.2
CLIP_MAE_MAX = 0.10
LR_OPT_FACTOR_MAX = 1.5
REGIME_ACCURACY_MIN = 0.90

# Rules of thumb that scale LR with batch size from one anchor (smallest measured B).
BETA_RULES: dict[str, float] = {"linear": 1.0, "square-root": 0.5}
NOISE_SCALE_RULE = "noise-scale"
NOISE_SCALE_KEYS = ("b_noise", "b_simple")  # prediction JSON keys holding B_noise, first found wins
# A batch size whose seed-mean losses at every LR that stayed finite (at least two) agree to within
# this relative tolerance has a flat loss curve: no optimum is located (e.g. a model that learned
# nothing at any LR, or LRs too small to move the weights). The losses are float32 (spacing 2^-23 ~
# 1.2e-7 relative near a loss of 2-4 nats): two losses a few float32 steps apart are not resolved
# from each other, and seed means of bit-identical run losses differ in the last fp64 bits too (three
# runs of 0.1 average to 0.10000000000000002). 1e-6 covers about eight float32 steps while staying
# three orders of magnitude below a real loss difference (evaluation noise ~1e-3 nats).
FLAT_RTOL = 1e-6
# Edge values of a batch size whose LR_opt is no optimum at all (not even a bound): one LR tested,
# or a flat loss curve. Such batch sizes stay in `BetaMeasurement.optima` (tables show them) but
# never enter a fit or the bootstrap behind β's interval.
NO_OPTIMUM_EDGES = ("only", "flat")
# Why a β / LR_opt / rules target is "not scored" when its only evidence is a grid-edge LR_opt: an
# edge minimum is a bound (LR_opt <= lowest or >= highest LR tried), not a measured optimum.
EDGE_REASON = "LR_opt at grid edge"
# Why a target is "not scored" when the measurement would do but the PREDICTED LR_opt it would be
# scored against is a grid-edge bound (or a line through bounds only: β not predicted).
PREDICTED_EDGE_REASON = "predicted LR_opt at grid edge"
# Where a comparison row's predicted LR_opt comes from (`LrOptRow.predicted_from`).
SOURCE_GRID = "simulated grid"
SOURCE_FIT = "predicted fit"
SOURCE_FIT_EDGE = "predicted fit (through grid-edge bounds)"
SOURCE_NOT_PREDICTED_EDGE = "not predicted: LR_opt on grid edges"
SOURCE_NONE = "none"
# Grid edges whose LR_opt is a one-sided bound (LR_opt <= lowest / >= highest LR tried) that a measured
# optimum can still violate, and the sign each reads with.
BOUND_EDGES = {"low": "≤", "high": "≥"}

# Optimizer settings a prediction records (its JSON's `optimizer_settings`) and a run's config.json
# records alike, per optimizer (those the optimizer reads), with their words: `setting_warnings`
# names every one the prediction simulated otherwise than the runs trained.
COMPARED_SETTINGS: dict[str, tuple[str, ...]] = {
    "adamw": ("betas", "eps", "weight_decay", "warmup_steps", "schedule"),
    "sgd": ("momentum", "weight_decay", "warmup_steps", "schedule"),
}
SETTING_WORDS = {"betas": "betas", "eps": "eps", "weight_decay": "weight decay", "momentum": "momentum",
                 "warmup_steps": "warmup steps", "schedule": "schedule"}

# Trajectory column -> summary column, so predictions reuse the measured-data functions.
PREDICTION_TO_SUMMARY: dict[str, str] = {
    "clip": "gradient_clip",
    "optimizer": "optimizer",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "final_loss": "final_val_loss",
    "clip_frequency": "avg_clip_frequency",
    "grad_norm_before": "avg_grad_norm_before",
    "grad_norm_after": "avg_grad_norm_after",
    "diverged_step": "diverged_step",
}


# --------------------------------------------------------------------------- per-config losses
def diverged_expr() -> pl.Expr:
    """A run counts as diverged when its final val loss is NaN/inf/null, converged is false, or it has
    a diverged_step."""
    not_finite = pl.col("final_val_loss").is_finite().fill_null(False).not_()
    not_converged = pl.col("converged").fill_null(True).not_()
    return not_finite | not_converged | pl.col("diverged_step").is_not_null()


def nonfinite_expr() -> pl.Expr:
    """The runs of `diverged_expr` that really diverged: a recorded diverged_step (the trainer's first
    step whose training loss or gradient norm was not finite) or a final val loss that is NaN/inf/null.
    The others it counts ended at a finite loss with converged = false."""
    not_finite = pl.col("final_val_loss").is_finite().fill_null(False).not_()
    return not_finite | pl.col("diverged_step").is_not_null()


def check_summaries(summaries: pl.DataFrame, what: str | None = None) -> None:
    """Raise PyphaseError, naming the first bad row, where summaries cannot be analysed: a batch size
    that is not a positive integer, an LR that is not positive and finite, or two runs of one
    experiment with the same (clip, optimizer, B, LR, seed), which would pass for two seeds and
    narrow β's interval (rows without a seed cannot be told apart and are not checked). `what` names
    the rows where they have no experiment column (e.g. "prediction DIR")."""

    def where(row: dict[str, Any]) -> str:
        exp = (f"experiment '{row['experiment']}'" if row.get("experiment") is not None
               else what or "summaries")
        run = f" run '{row['run_id']}'" if row.get("run_id") is not None else ""
        return exp + run

    bad_b = summaries.filter(pl.col("batch_size").fill_null(0) <= 0)
    if bad_b.height:
        row = bad_b.row(0, named=True)
        raise PyphaseError(f"{where(row)}: batch_size must be a positive integer, got {row['batch_size']}")
    lr = pl.col("lr").cast(pl.Float64)
    bad_lr = summaries.filter((lr.is_finite() & (lr > 0)).fill_null(False).not_())
    if bad_lr.height:
        row = bad_lr.row(0, named=True)
        raise PyphaseError(f"{where(row)}: lr must be positive and finite, got {row['lr']}")
    if "seed" not in summaries.columns:
        return
    keys = [c for c in ["experiment", *CONFIG_KEYS, "seed"] if c in summaries.columns]
    seeded = summaries.filter(pl.col("seed").is_not_null())
    dup = seeded.filter(seeded.select(keys).is_duplicated())
    if dup.height:
        row = dup.row(0, named=True)
        same = dup.filter(pl.all_horizontal(pl.col(k).eq_missing(row[k]) for k in keys))
        what = ", ".join(f"{k} {row[k]}" for k in keys if k != "experiment")
        raise PyphaseError(f"{where(row)}: {same.height} runs have {what}; each would count as another seed "
                           f"({dup.height} duplicated rows in all: remove the duplicates)")


def with_effective_loss(summaries: pl.DataFrame) -> pl.DataFrame:
    """Add `diverged` and `loss` (final val loss, +inf for a diverged run, so it never wins a minimum)."""
    df = summaries.with_columns(diverged_expr().alias("diverged"))
    return df.with_columns(
        pl.when(pl.col("diverged")).then(float("inf")).otherwise(pl.col("final_val_loss")).alias("loss")
    )


def config_table(summaries: pl.DataFrame) -> pl.DataFrame:
    """One row per (clip, optimizer, B, LR): the seed's columns as means over seeds, plus seed counts.

    `loss` is the mean final val loss with diverged runs as +inf (what LR_opt is chosen from).
    `n_diverged` counts the seeds with that +inf loss (`diverged_expr`), split into `n_nonfinite`
    (really diverged: `nonfinite_expr`) and `n_not_converged` (finite loss, converged = false).
    """
    check_summaries(summaries)
    df = with_effective_loss(summaries)
    return (
        df.group_by(CONFIG_KEYS)
        .agg(
            pl.col("final_train_loss").mean(),
            pl.col("final_val_loss").mean(),
            pl.col("train_loss_std").mean(),
            pl.col("avg_grad_norm_before").mean(),
            pl.col("avg_grad_norm_after").mean(),
            pl.col("avg_clip_frequency").mean(),
            pl.col("converged").fill_null(True).all(),
            pl.col("num_steps").max(),
            pl.col("loss").mean(),
            pl.len().alias("n_seeds"),
            pl.col("diverged").sum().alias("n_diverged"),
            nonfinite_expr().sum().alias("n_nonfinite"),
            (pl.col("diverged") & nonfinite_expr().not_()).sum().alias("n_not_converged"),
        )
        .sort(CONFIG_KEYS, nulls_last=False)
    )


def groups(df: pl.DataFrame) -> list[tuple[float | None, str | None, pl.DataFrame]]:
    """(clip, optimizer, rows) for each clip/optimizer group, clipping off first, then by threshold."""
    parts = df.sort(CONFIG_KEYS, nulls_last=False).partition_by(GROUP_KEYS, maintain_order=True)
    return [(p["gradient_clip"][0], p["optimizer"][0], p) for p in parts]


# --------------------------------------------------------------------------- LR_opt per batch size
def refine_minima(log_lr: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum of each row of `losses` (m, n) over the ascending grid `log_lr` (n,).

    Returns (log10 LR_opt, grid argmin index, refined) per row. An interior minimum whose two
    neighbours are finite is moved to the vertex of the parabola through the three points (it stays
    between the neighbours because the middle point is the lowest); a minimum on the grid edge, next
    to a diverged point, or on a flat stretch keeps its grid value.
    """
    x = np.asarray(log_lr, dtype=float)
    y = np.atleast_2d(np.asarray(losses, dtype=float))
    idx = np.argmin(y, axis=1)
    opt = x[idx].copy()
    refined = np.zeros(len(idx), dtype=bool)
    if x.size < 3:
        return opt, idx, refined
    mid = np.clip(idx, 1, x.size - 2)
    rows = np.arange(len(idx))
    d0, d2 = x[mid - 1] - x[mid], x[mid + 1] - x[mid]
    y1 = y[rows, mid]
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf where points diverged; masked below
        u0, u2 = y[rows, mid - 1] - y1, y[rows, mid + 1] - y1
        # y - y1 = a t^2 + b t through (d0, u0) and (d2, u2), t = x - x_mid
        det = d0 * d2 * (d0 - d2)
        a = (u0 * d2 - u2 * d0) / det
        b = (d0**2 * u2 - d2**2 * u0) / det
        vertex = x[mid] - b / (2 * a)
    ok = (idx == mid) & np.isfinite(u0) & np.isfinite(u2) & np.isfinite(y1) & (a > 0)
    opt[ok] = vertex[ok]
    refined[ok] = True
    return opt, idx, refined


@dataclass(frozen=True)
class LrOptimum:
    """LR_opt of one batch size (within one clip/optimizer group)."""

    batch_size: int
    lr_opt: float  # refined when `refined`, else the grid argmin; NaN when every LR diverged or the curve is flat
    grid_lr: float  # argmin on the grid (the seed's naive choice); NaN as lr_opt
    min_loss: float  # seed-mean loss at the grid argmin (the common loss of a flat curve)
    at_edge: bool  # LR_opt is not a measured optimum: a grid-edge bound, one LR tested, or a flat curve
    edge: str | None  # "low" | "high" | "only" (one LR tested) | "flat" (equal losses at every LR) | None
    refined: bool
    note: str
    n_lrs: int
    n_seeds: int  # fewest seeds behind any LR of this batch size
    lr_grid: tuple[float, ...] = field(repr=False)

    @property
    def fit_point(self) -> bool:
        """Whether this LR_opt enters the power-law fit of LR_opt vs B: it is finite and the minimum
        of losses that differ over an LR grid (a grid-edge bound counts, and is flagged as one); a
        single LR tested or a flat loss curve locates no optimum and does not."""
        return math.isfinite(self.lr_opt) and self.edge not in NO_OPTIMUM_EDGES

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _edge_of(idx: int, n: int) -> str | None:
    if n == 1:
        return "only"
    if idx == 0:
        return "low"
    if idx == n - 1:
        return "high"
    return None


def _is_flat(mean_loss: np.ndarray) -> bool:
    """Every finite seed-mean loss equal to within FLAT_RTOL, with at least two finite LRs."""
    finite = mean_loss[np.isfinite(mean_loss)]
    return finite.size >= 2 and float(np.ptp(finite)) <= FLAT_RTOL * float(np.max(np.abs(finite)))


def _note_of(lr: float, edge: str | None, refined: bool, all_diverged: bool, neighbour_diverged: bool = False,
             *, loss: float = math.nan, n_finite: int = 0, n_lrs: int = 0) -> str:
    if all_diverged:
        return "every LR diverged or did not converge"
    if edge == "only":
        return "one LR tested: no optimum can be located"
    if edge == "flat":
        where = (f"all {n_lrs} LRs" if n_finite == n_lrs
                 else f"all {n_finite} LRs with a finite loss in every seed ({n_lrs - n_finite} of {n_lrs} diverged or did not converge)")
        return (f"flat: {where} give the same seed-mean loss ({loss:.4g}), so no optimum can be located "
                "(the loss does not depend on LR over this grid)")
    if edge == "low":
        return f"minimum at the low edge of the grid: LR_opt <= {lr:.4g}"
    if edge == "high":
        return f"minimum at the high edge of the grid: LR_opt >= {lr:.4g}"
    if refined:
        return "parabola through the three points around the grid minimum"
    if neighbour_diverged:
        return "an LR next to the grid minimum diverged or did not converge: grid value kept (no parabola through an infinite loss)"
    return "flat minimum (equal losses around it): grid value kept"


def optimum_of(batch_size: int, lrs: np.ndarray, mean_loss: np.ndarray, n_seeds: int) -> LrOptimum:
    """LR_opt of one batch size from the seed-mean losses over its ascending LR grid.

    A flat curve (every finite loss equal, see FLAT_RTOL) gets edge "flat" and NaN LR_opt: argmin
    would pick the lowest LR and pass it off as a low-edge bound, but no LR is better than another.
    """
    mean_loss = np.asarray(mean_loss, dtype=float)
    log_opt, idx, refined = refine_minima(np.log10(lrs), mean_loss[None, :])
    i = int(idx[0])
    all_diverged = not np.isfinite(mean_loss).any()
    flat = not all_diverged and _is_flat(mean_loss)
    neighbours = mean_loss[max(i - 1, 0) : i + 2]
    edge = None if all_diverged else "flat" if flat else _edge_of(i, len(lrs))
    no_optimum = all_diverged or flat
    is_refined = bool(refined[0]) and not flat
    return LrOptimum(
        batch_size=int(batch_size),
        lr_opt=float("nan") if no_optimum else float(10 ** log_opt[0] if is_refined else lrs[i]),
        grid_lr=float("nan") if no_optimum else float(lrs[i]),
        min_loss=float(mean_loss[i]),
        at_edge=edge is not None,
        edge=edge,
        refined=is_refined,
        note=_note_of(float(lrs[i]), edge, is_refined, all_diverged, not np.isfinite(neighbours).all(),
                      loss=float(mean_loss[i]), n_finite=int(np.isfinite(mean_loss).sum()), n_lrs=len(lrs)),
        n_lrs=len(lrs),
        n_seeds=n_seeds,
        lr_grid=tuple(float(v) for v in lrs),
    )


def _seed_losses(group: pl.DataFrame) -> dict[int, tuple[np.ndarray, list[np.ndarray]]]:
    """Per batch size: ascending LRs and, for each, the per-seed losses (+inf = diverged)."""
    out: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
    df = with_effective_loss(group).sort(["batch_size", "lr"])
    for (b,), part in df.group_by(["batch_size"], maintain_order=True):
        per_lr = part.group_by("lr", maintain_order=True).agg(pl.col("loss")).sort("lr")
        out[int(b)] = (per_lr["lr"].to_numpy(), [np.asarray(v, dtype=float) for v in per_lr["loss"].to_list()])
    return out


def lr_optima(group: pl.DataFrame) -> list[LrOptimum]:
    """LR_opt for each batch size of one clip/optimizer group (summary rows of any number of seeds)."""
    result = []
    for b, (lrs, seed_losses) in _seed_losses(group).items():
        means = np.array([s.mean() for s in seed_losses])
        result.append(optimum_of(b, lrs, means, min(len(s) for s in seed_losses)))
    return result


# --------------------------------------------------------------------------- power-law fits
@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares line log10 LR = log10 C + β log10 B."""

    beta: float
    c: float
    r2: float  # NaN when every LR_opt is equal (nothing to explain)
    beta_stderr: float  # NaN with two points (an exact line has no residual to estimate it from)
    n: int

    def lr_at(self, batch_size: float) -> float:
        return self.c * batch_size**self.beta

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def fit_power_law(batch_sizes: Sequence[float], lrs: Sequence[float]) -> PowerLawFit:
    """Fit LR = C·B^β by least squares in log10-log10 space (scipy linregress); needs >= 2 distinct B."""
    x, y = np.log10(np.asarray(batch_sizes, float)), np.log10(np.asarray(lrs, float))
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a power-law fit needs at least two distinct batch sizes")
    r = stats.linregress(x, y)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - (r.intercept + r.slope * x)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    # β's standard error from the residuals, not linregress's: scipy gives NaN when every LR is equal,
    # where the residuals (all zero) give 0, and the same value otherwise
    sxx = float(np.sum((x - x.mean()) ** 2))
    stderr = math.sqrt(ss_res / (x.size - 2) / sxx) if x.size > 2 else float("nan")
    return PowerLawFit(float(r.slope), float(10**r.intercept), r2, stderr, int(x.size))


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of y (m, n) on x (n,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=1, keepdims=True)) @ xc / np.sum(xc**2)


def bootstrap_betas(
    seed_losses: Mapping[int, tuple[np.ndarray, list[np.ndarray]]], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """β of `n_boot` resamples: each config's seeds are drawn with replacement, LR_opt refined, β refit."""
    bs = sorted(seed_losses)
    log_opts = []
    for b in bs:
        lrs, per_lr = seed_losses[b]
        means = np.column_stack([s[rng.integers(0, len(s), (n_boot, len(s)))].mean(axis=1) for s in per_lr])
        log_opts.append(refine_minima(np.log10(lrs), means)[0])
    return _slopes(np.log10(np.asarray(bs, float)), np.column_stack(log_opts))


def _t_interval(fit: PowerLawFit) -> tuple[float, float]:
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, fit.n - 2) * fit.beta_stderr
    return fit.beta - half, fit.beta + half


# --------------------------------------------------------------------------- β of one group
@dataclass(frozen=True)
class BetaMeasurement:
    """β of one clip/optimizer group: refined fit with interval, and the seed's naive grid-argmin fit."""

    gradient_clip: float | None
    optimizer: str | None
    optima: tuple[LrOptimum, ...]
    fit: PowerLawFit | None  # None with fewer than two usable batch sizes
    ci_low: float | None
    ci_high: float | None
    interval_method: str
    naive: PowerLawFit | None

    @property
    def any_at_edge(self) -> bool:
        """Some batch size's LR_opt is not a measured optimum (grid-edge bound, one LR, flat curve)."""
        return any(o.at_edge for o in self.optima)

    @property
    def all_at_edge(self) -> bool:
        """Every LR_opt that enters the fit is a grid-edge bound: a line through them reflects the
        grid, not the loss. A batch size with no optimum (one LR, a flat curve, every LR diverged)
        is not in the fit and does not make the others interior (True when none is in the fit)."""
        return all(o.at_edge for o in self.fit_optima)

    @property
    def fit_optima(self) -> tuple[LrOptimum, ...]:
        """The batch sizes whose LR_opt enters `fit` (see `LrOptimum.fit_point`)."""
        return tuple(o for o in self.optima if o.fit_point)

    @property
    def left_out_of_fit(self) -> dict[int, str]:
        """Batch size -> why its LR_opt is not in `fit` (one LR tested, flat curve, every LR diverged)."""
        return {o.batch_size: _left_out_reason(o) for o in self.optima if not o.fit_point}

    @property
    def not_measured_reason(self) -> str | None:
        """Why there is no fit, in words (None when there is one)."""
        return None if self.fit is not None else _no_fit_reason(self.optima)

    @property
    def status(self) -> str:
        """"fit" (a β), "bounded" (some LR_opt in the fit on a grid edge: β only a bound) or "none"
        (no fit, or every LR_opt in it on a grid edge: the line reflects the grid, not the loss)."""
        if self.fit is None or self.all_at_edge:
            return "none"
        return "bounded" if any(o.at_edge for o in self.fit_optima) else "fit"

    def to_dict(self) -> dict[str, Any]:
        """As JSON: β, its interval, c and R² are null where there is no β (`status` "none"), as the
        report's words say "not measured" there; `fit` keeps the line itself (a line through grid-edge
        values has a slope, which reflects the grid)."""
        beta = self.fit if self.status != "none" else None
        return json_safe(
            {
                "gradient_clip": self.gradient_clip,
                "optimizer": self.optimizer,
                "beta": beta.beta if beta else None,
                "beta_status": self.status,
                "c": beta.c if beta else None,
                "r2": beta.r2 if beta else None,
                "ci95": [self.ci_low, self.ci_high] if beta and self.ci_low is not None else None,
                "interval_method": self.interval_method,
                "any_at_edge": self.any_at_edge,
                "left_out_of_fit": {str(b): why for b, why in self.left_out_of_fit.items()},
                "fit": self.fit.to_dict() if self.fit else None,
                "naive_fit": self.naive.to_dict() if self.naive else None,
                "optima": [o.to_dict() for o in self.optima],
            }
        )


def _left_out_reason(o: LrOptimum) -> str:
    if o.edge == "only":
        return "one LR tested, and a single LR cannot locate an optimum"
    if o.edge == "flat":
        return "the same loss at every LR (flat), so no optimum is located"
    return "every LR diverged or did not converge"


def _no_fit_reason(optima: Sequence[LrOptimum]) -> str:
    """Why fewer than two batch sizes enter the fit, naming what is wrong with the others."""
    located = sorted({o.batch_size for o in optima if o.fit_point})
    why: dict[str, list[int]] = {}
    for o in optima:
        if not o.fit_point:
            why.setdefault(_left_out_reason(o), []).append(o.batch_size)
    if not why:
        have = f"the group has one batch size (B={located[0]})" if located else "the group has no batch size"
    else:
        have = f"only B={located[0]} has one" if located else "no batch size has one"
    text = f"β needs LR_opt at two or more batch sizes, and {have}"
    if why:
        text += " (" + "; ".join(f"B={', '.join(map(str, sorted(bs)))}: {w}" for w, bs in why.items()) + ")"
    return text


def _interval(
    fit: PowerLawFit | None,
    seed_losses: Mapping[int, tuple[np.ndarray, list[np.ndarray]]],
    n_boot: int,
    seed: int,
    no_fit_reason: str = "fewer than two batch sizes with a finite LR_opt",
) -> tuple[float | None, float | None, str]:
    if fit is None:
        return None, None, f"undefined: {no_fit_reason}"
    if fit.n == 2:
        return None, None, "undefined: only two batch sizes (the line passes through both points exactly)"
    min_seeds = min(len(s) for _, per_lr in seed_losses.values() for s in per_lr)
    if min_seeds >= 2:
        betas = bootstrap_betas(seed_losses, n_boot, np.random.default_rng(seed))
        lo, hi = np.percentile(betas, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
        method = f"bootstrap over seeds ({n_boot} resamples, percentile)"
        if min_seeds >= MIN_BOOTSTRAP_SEEDS:
            return float(lo), float(hi), method
        # Two seeds give each config only three distinct resampled means, and the resamples never see
        # how far the LR_opt points scatter around the line: the percentile interval comes out far
        # too narrow (phase2_5, 2 seeds: [-0.34, -0.27] against the fit's [-1.1, 0.5]). Report the
        # envelope of both intervals instead.
        t_lo, t_hi = _t_interval(fit)
        return (min(float(lo), t_lo), max(float(hi), t_hi),
                f"widest of {method} and fit covariance (Student t, {fit.n - 2} dof): "
                f"{min_seeds} seeds are too few for a percentile bootstrap alone")
    lo, hi = _t_interval(fit)
    return lo, hi, f"fit covariance (Student t, {fit.n - 2} dof; one seed per config)"


def _fit_or_none(optima: Sequence[LrOptimum], attr: str) -> PowerLawFit | None:
    """Power law through `attr` ("lr_opt" or "grid_lr") of the fit points (`LrOptimum.fit_point`):
    a batch size with one LR tested or a flat loss curve has no optimum to put on the line."""
    usable = [o for o in optima if o.fit_point and math.isfinite(getattr(o, attr))]
    if len({o.batch_size for o in usable}) < 2:
        return None
    return fit_power_law([o.batch_size for o in usable], [getattr(o, attr) for o in usable])


def measure_group(group: pl.DataFrame, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> BetaMeasurement:
    """β of one clip/optimizer group's summary rows. Batch sizes with one LR tested or a flat loss
    curve stay in `optima` but are left out of the fit and of the bootstrap behind the interval."""
    optima = tuple(lr_optima(group))
    fit = _fit_or_none(optima, "lr_opt")
    usable = {o.batch_size for o in optima if o.fit_point}
    seed_losses = {b: v for b, v in _seed_losses(group).items() if b in usable}
    lo, hi, method = _interval(fit, seed_losses, n_boot, seed, _no_fit_reason(optima))
    return BetaMeasurement(
        gradient_clip=group["gradient_clip"][0],
        optimizer=group["optimizer"][0],
        optima=optima,
        fit=fit,
        ci_low=lo,
        ci_high=hi,
        interval_method=method,
        naive=_fit_or_none(optima, "grid_lr"),
    )


def measure_beta(summaries: pl.DataFrame, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> list[BetaMeasurement]:
    """β for every clip/optimizer group of an experiment's summaries (one row per run)."""
    if summaries.height == 0:
        raise PyphaseError("no finished runs to measure β from")
    check_summaries(summaries)
    return [measure_group(g, n_boot=n_boot, seed=seed) for _, _, g in groups(summaries)]


# --------------------------------------------------------------------------- β along training
def summaries_at_step(summaries: pl.DataFrame, steps: pl.DataFrame, step: int) -> pl.DataFrame:
    """`summaries` as if every run had stopped after `step` steps: `final_val_loss` is the val loss
    evaluated at that step (null where the run has none), and a run counts as diverged only if it
    diverged at or before `step` (what happened later is outside this budget)."""
    val = steps.filter((pl.col("step") == step) & pl.col("val_loss").is_not_null()).select(
        "run_id", pl.col("val_loss").alias("_val")
    )
    div = pl.col("diverged_step").cast(pl.Int64, strict=False)
    diverged_by = div.is_not_null() & (div < step)  # its first non-finite step, diverged_step + 1, is <= step
    return (
        summaries.join(val, on="run_id", how="left")
        .with_columns(
            pl.col("_val").alias("final_val_loss"),
            pl.when(diverged_by).then(div).otherwise(None).alias("diverged_step"),
            diverged_by.not_().alias("converged"),
            pl.lit(step).cast(summaries.schema["num_steps"]).alias("num_steps"),
        )
        .drop("_val")
    )


def common_eval_steps(summaries: pl.DataFrame, steps: pl.DataFrame) -> list[int]:
    """Evaluation steps after step 0 at which every run of `summaries` has a val loss (or had
    already diverged), ascending."""
    evals = steps.filter(pl.col("val_loss").is_not_null() & (pl.col("step") > 0))
    by_run = {r: set(v) for r, v in evals.group_by("run_id").agg(pl.col("step")).iter_rows()}
    common: set[int] = set().union(*by_run.values())
    for run_id, div in summaries.select("run_id", "diverged_step").iter_rows():
        have = by_run.get(run_id, set())
        common = {t for t in common if t in have or (div is not None and div < t)}
    return sorted(common)


@dataclass(frozen=True)
class BudgetBeta:
    """β of one clip/optimizer group with the val loss at `step` as every run's outcome."""

    step: int
    measurement: BetaMeasurement
    best_loss: float  # lowest seed-mean val loss over the group's configs at that step

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"step": self.step, "best_loss": self.best_loss} | self.measurement.to_dict())


def beta_along_training(
    summaries: pl.DataFrame, steps: pl.DataFrame, *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> list[BudgetBeta]:
    """β at every common evaluation step, each step taken as the training budget (val loss there in
    place of the final one). Shows how LR_opt's batch dependence moves as training goes on, e.g. from
    optimisation-limited early budgets to data-limited late ones."""
    out = []
    for t in common_eval_steps(summaries, steps):
        at = summaries_at_step(summaries, steps, t)
        cfg = config_table(at)
        for m in measure_beta(at, n_boot=n_boot, seed=seed):
            g = cfg.filter(
                pl.col("gradient_clip").eq_missing(m.gradient_clip) & pl.col("optimizer").eq_missing(m.optimizer)
            )
            finite = g.filter(pl.col("loss").is_finite())["loss"]
            out.append(BudgetBeta(t, m, float(finite.min()) if finite.len() else math.nan))
    return out


# --------------------------------------------------------------------------- clip telemetry check
@dataclass(frozen=True)
class ClipNormCheck:
    """Whether the after-clip norms are plausible: never above the threshold, below before when clipping."""

    clipped_runs: int
    regimes: dict[str, int]  # configs (seed means) per regime, clipped groups only
    after_above_threshold: int
    after_equals_before: int
    max_after_over_threshold: float
    after_above_before: int = 0  # runs whose mean after-clip norm exceeds the mean before it

    @property
    def ok(self) -> bool:
        return self.after_above_threshold == 0 and self.after_equals_before == 0 and self.after_above_before == 0

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self) | {"ok": self.ok})


def check_clip_norms(summaries: pl.DataFrame) -> ClipNormCheck:
    """Check every clipped run's mean after-clip norm against its threshold and its before-clip norm.

    Each step's after-clip norm is min(before, threshold), so the mean can never exceed the
    threshold, and a run that clipped at all has mean after < mean before. Seed 000 reported
    after == before at 100% clipping: a measurement taken before the clip.
    """
    clipped = summaries.filter(pl.col("gradient_clip").is_not_null())
    if clipped.height == 0:
        return ClipNormCheck(0, {r: 0 for r in REGIMES}, 0, 0, float("nan"))
    after, before = pl.col("avg_grad_norm_after"), pl.col("avg_grad_norm_before")
    flags = clipped.select(
        (after > pl.col("gradient_clip") * (1 + 1e-3)).sum().alias("above"),
        (((after - before).abs() <= 1e-9 * before.abs()) & (pl.col("avg_clip_frequency") > 0)).sum().alias("equal"),
        (after / pl.col("gradient_clip")).max().alias("ratio"),
        (after > before * (1 + 1e-6)).sum().alias("above_before"),
    )
    freqs = config_table(clipped)["avg_clip_frequency"].drop_nulls().to_list()
    regimes = {r: 0 for r in REGIMES}
    for f in freqs:
        regimes[regime_of(f)] += 1
    ratio = flags["ratio"][0]
    return ClipNormCheck(
        clipped_runs=clipped.height,
        regimes=regimes,
        after_above_threshold=int(flags["above"][0]),
        after_equals_before=int(flags["equal"][0]),
        max_after_over_threshold=float(ratio) if ratio is not None else float("nan"),
        after_above_before=int(flags["above_before"][0]),
    )


# --------------------------------------------------------------------------- predictions
def prediction_summaries(trajectories: pl.DataFrame) -> pl.DataFrame:
    """A prediction table (schema.PREDICTION_COLUMNS) in summary columns, diverged -> converged=false."""
    missing = [c for c in PREDICTION_COLUMNS if c not in trajectories.columns]
    if missing:
        raise PyphaseError(f"prediction table: missing column '{missing[0]}'")
    df = trajectories.select(
        [pl.col(src).alias(dst) for src, dst in PREDICTION_TO_SUMMARY.items()]
        + [pl.col("diverged").fill_null(False).not_().alias("converged")]
    )
    return df.with_columns(
        pl.col("gradient_clip").cast(pl.Float64),
        pl.col("batch_size").cast(pl.Int64),
        pl.col("lr").cast(pl.Float64),
        pl.col("final_val_loss").cast(pl.Float64),
        pl.col("diverged_step").cast(pl.Int64),
        pl.lit(None, dtype=pl.Float64).alias("final_train_loss"),
        pl.lit(None, dtype=pl.Float64).alias("train_loss_std"),
        pl.lit(None, dtype=pl.Int64).alias("num_steps"),
    )


# --------------------------------------------------------------------------- rules and scores
def beta_rule_lr(batch_sizes: Sequence[int], anchor_b: int, anchor_lr: float, beta: float) -> dict[int, float]:
    """LR(B) = LR(B0)·(B/B0)^β: a scaling rule anchored at one measured batch size."""
    return {int(b): anchor_lr * (b / anchor_b) ** beta for b in batch_sizes}


def noise_scale_rule_lr(
    batch_sizes: Sequence[int], anchor_b: int, anchor_lr: float, b_noise: float
) -> dict[int, float]:
    """McCandlish et al. (2018): LR(B) ∝ 1 / (1 + B_noise/B), anchored at one measured batch size."""
    return {int(b): anchor_lr * (1 + b_noise / anchor_b) / (1 + b_noise / b) for b in batch_sizes}


def log10_rmse(predicted: Mapping[int, float], measured: Mapping[int, float]) -> float:
    """Root-mean-square of log10(predicted/measured) over the batch sizes both have (NaN if none)."""
    common = [b for b in measured if b in predicted and math.isfinite(predicted[b]) and math.isfinite(measured[b])]
    if not common:
        return float("nan")
    return float(np.sqrt(np.mean([math.log10(predicted[b] / measured[b]) ** 2 for b in common])))


@dataclass(frozen=True)
class RuleScore:
    """A rule's LR_opt per measured batch size and its error against the measurement."""

    name: str
    beta: float  # fitted slope of the rule's LRs over the measured batch sizes
    lr_opt: dict[int, float]
    log10_rmse: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def _score(name: str, lr: dict[int, float], measured: Mapping[int, float]) -> RuleScore:
    bs = sorted(b for b in lr if b in measured)
    beta = fit_power_law(bs, [lr[b] for b in bs]).beta if len(bs) >= 2 else float("nan")
    return RuleScore(name, beta, lr, log10_rmse(lr, measured))


def score_rules(
    measured: Mapping[int, float], *, b_noise: float | None = None, extra: Mapping[str, Any] | None = None
) -> list[RuleScore]:
    """Linear, square-root and (with B_noise) noise-scale rules, plus any extra baselines, anchored
    at the smallest measured batch size and scored on every measured batch size."""
    if not measured:
        return []
    bs = sorted(measured)
    anchor_b, anchor_lr = bs[0], measured[bs[0]]
    scores = [
        _score(f"{n} (β={v:g})", beta_rule_lr(bs, anchor_b, anchor_lr, v), measured) for n, v in BETA_RULES.items()
    ]
    if b_noise is not None:
        lr = noise_scale_rule_lr(bs, anchor_b, anchor_lr, b_noise)
        scores.append(_score(f"{NOISE_SCALE_RULE} (B_noise={b_noise:g})", lr, measured))
    for name, spec in (extra or {}).items():
        scores.append(_score(name, _baseline_lr(name, spec, bs, anchor_b, anchor_lr), measured))
    return scores


def _baseline_lr(name: str, spec: Any, bs: Sequence[int], anchor_b: int, anchor_lr: float) -> dict[int, float]:
    """A baseline from the prediction JSON: {"beta": x} (anchored like the rules) or {"lr_opt": {"B": lr}}."""
    if isinstance(spec, Mapping) and isinstance(spec.get("beta"), (int, float)):
        if not math.isfinite(spec["beta"]):
            raise PyphaseError(f"prediction baseline '{name}': beta must be finite, got {spec['beta']}")
        return beta_rule_lr(bs, anchor_b, anchor_lr, float(spec["beta"]))
    if isinstance(spec, Mapping) and isinstance(spec.get("lr_opt"), Mapping):
        try:
            lr = {int(b): float(v) for b, v in spec["lr_opt"].items()}
        except (TypeError, ValueError) as e:
            raise PyphaseError(f"prediction baseline '{name}': lr_opt must map batch size to LR ({e})") from e
        for b, v in lr.items():
            if b <= 0 or not (math.isfinite(v) and v > 0):
                raise PyphaseError(f"prediction baseline '{name}': lr_opt needs batch sizes >= 1 and LRs positive "
                                   f"and finite, got {b}: {v}")
        return lr
    raise PyphaseError(f'prediction baseline \'{name}\': expected {{"beta": x}} or {{"lr_opt": {{B: lr}}}}')


# --------------------------------------------------------------------------- predicted vs measured
@dataclass(frozen=True)
class LrOptRow:
    """Measured and predicted LR_opt at one measured batch size."""

    batch_size: int
    measured: float
    measured_at_edge: bool
    predicted: float | None
    predicted_from: str  # SOURCE_GRID | SOURCE_FIT | SOURCE_FIT_EDGE | SOURCE_NOT_PREDICTED_EDGE | SOURCE_NONE
    # the predicted value is a grid-edge bound, or a line through some (SOURCE_FIT_EDGE); also True
    # where no value is given because every predicted LR_opt is on a grid edge
    predicted_at_edge: bool
    ratio: float | None  # predicted / measured
    # which side of the simulated grid a predicted grid-edge bound is on: "low" (the prediction says
    # LR_opt <= `predicted`) or "high" (LR_opt >= `predicted`); None for a located optimum, a line
    # (clean or through bounds) and a single simulated LR, which bound nothing on one side
    predicted_edge: str | None = None

    @property
    def bound_violation(self) -> float | None:
        """For a predicted grid-edge bound against an interior measured LR_opt: by what factor the
        measurement lies beyond the bound (1 where the bound holds); None for any other row."""
        if self.predicted_edge not in BOUND_EDGES or self.predicted is None or self.measured_at_edge:
            return None
        if self.predicted_edge == "low":
            return self.measured / self.predicted if self.measured > self.predicted else 1.0
        return self.predicted / self.measured if self.measured < self.predicted else 1.0

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self) | {"bound_violation": self.bound_violation})


@dataclass(frozen=True)
class GroupComparison:
    """One clip/optimizer group: measured and predicted β, LR_opt per B, and the rules' scores."""

    gradient_clip: float | None
    optimizer: str | None
    measured: BetaMeasurement
    predicted: BetaMeasurement | None
    lr_rows: tuple[LrOptRow, ...]
    prediction_log10_rmse: float | None
    rules: tuple[RuleScore, ...]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "gradient_clip": self.gradient_clip,
                "optimizer": self.optimizer,
                "measured": self.measured.to_dict(),
                "predicted": self.predicted.to_dict() if self.predicted else None,
                "lr_opt": [r.to_dict() for r in self.lr_rows],
                "prediction_log10_rmse": self.prediction_log10_rmse,
                "rules": [r.to_dict() for r in self.rules],
            }
        )


@dataclass(frozen=True)
class ClipRow:
    """Measured and predicted clip frequency (seed means) of one clipped config."""

    gradient_clip: float
    optimizer: str | None
    batch_size: int
    lr: float
    measured: float
    predicted: float
    measured_regime: str
    predicted_regime: str

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class Target:
    """One of issue 6's acceptance targets; passed is None when it cannot be scored, and `reason`
    then says why (e.g. EDGE_REASON)."""

    name: str
    criterion: str
    value: str
    passed: bool | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Everything `pyphase compare` reports for one experiment."""

    experiment: str
    prediction_source: str | None
    groups: tuple[GroupComparison, ...]
    clip_rows: tuple[ClipRow, ...]
    unmatched_configs: int  # clipped measured configs with no predicted (B, LR, clip)
    clip_mae: float | None
    regime_confusion: dict[str, dict[str, int]]  # measured regime -> predicted regime -> configs
    regime_accuracy: float | None
    targets: tuple[Target, ...]
    b_noise: float | None = None  # B_noise of the noise-scale rule, None when that rule was not scored
    b_noise_source: str | None = None  # where b_noise came from, in words
    # steps and optimizer settings the prediction simulated otherwise than the runs trained (`setting_warnings`)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "experiment": self.experiment,
                "prediction_source": self.prediction_source,
                "warnings": list(self.warnings),
                "b_noise": self.b_noise,
                "b_noise_source": self.b_noise_source,
                "groups": [g.to_dict() for g in self.groups],
                "clip_frequency": [r.to_dict() for r in self.clip_rows],
                "unmatched_configs": self.unmatched_configs,
                "clip_frequency_mae": self.clip_mae,
                "regime_confusion": self.regime_confusion,
                "regime_accuracy": self.regime_accuracy,
                "targets": [t.to_dict() for t in self.targets],
            }
        )


def _clip_key(clip: float | None) -> float | None:
    return None if clip is None else round(float(clip), 9)


def _matching_group(
    clip: float | None, optimizer: str | None, predicted: Sequence[tuple[float | None, str | None, pl.DataFrame]]
) -> pl.DataFrame | None:
    """The predicted group with the same clip and optimizer; an unknown measured optimizer matches
    the only predicted optimizer at that clip (several would be ambiguous)."""
    same_clip = [(o, g) for c, o, g in predicted if _clip_key(c) == _clip_key(clip)]
    exact = [g for o, g in same_clip if o == optimizer]
    if exact:
        return exact[0]
    if optimizer is None and len(same_clip) == 1:
        return same_clip[0][1]
    if optimizer is None and len(same_clip) > 1:
        names = ", ".join(sorted(str(o) for o, _ in same_clip))
        raise PyphaseError(f"measured runs record no optimizer and the prediction has several ({names})")
    return None


def _lr_rows(measured: BetaMeasurement, predicted: BetaMeasurement | None) -> tuple[LrOptRow, ...]:
    """Measured against predicted LR_opt per measured batch size: the prediction's own LR_opt where it
    simulated that B, else its fitted line at B. A line through grid-edge bounds only (β not
    predicted) extrapolates nothing; one with some edge bounds in it gives a value flagged
    `predicted_at_edge` (a bound-derived number, not a clean prediction). A simulated grid-edge
    minimum is flagged too and carries its side (`predicted_edge`), the direction of its bound."""
    by_b = {o.batch_size: o for o in predicted.optima} if predicted else {}
    fit_has_edge = predicted is not None and any(o.at_edge for o in predicted.fit_optima)
    rows = []
    for o in measured.optima:
        if not math.isfinite(o.lr_opt):
            continue
        p = by_b.get(o.batch_size)
        side = None
        if p is not None and math.isfinite(p.lr_opt):
            lr, source, edge = p.lr_opt, SOURCE_GRID, p.at_edge
            side = p.edge if p.edge in BOUND_EDGES else None
        elif predicted is not None and predicted.fit is not None and predicted.all_at_edge:
            lr, source, edge = None, SOURCE_NOT_PREDICTED_EDGE, True
        elif predicted is not None and predicted.fit is not None:
            lr = predicted.fit.lr_at(o.batch_size)
            source, edge = (SOURCE_FIT_EDGE, True) if fit_has_edge else (SOURCE_FIT, False)
        else:
            lr, source, edge = None, SOURCE_NONE, False
        ratio = lr / o.lr_opt if lr is not None else None
        rows.append(LrOptRow(o.batch_size, o.lr_opt, o.at_edge, lr, source, edge, ratio, side))
    return tuple(rows)


def _clean_predictions(rows: Sequence[LrOptRow]) -> dict[int, float]:
    """Batch size -> predicted LR_opt of the rows whose prediction is a located optimum or a line
    through located optima (no grid-edge bound behind it): the only values a score may rest on."""
    return {r.batch_size: r.predicted for r in rows if r.predicted is not None and not r.predicted_at_edge}


def _lr_key() -> pl.Expr:
    # LR grids written by different programs differ in the last bits (0.001 vs 0.0010000000000000002).
    return (pl.col("lr").log10() * 1e6).round().cast(pl.Int64).alias("lr_key")


def _clip_rows(measured: pl.DataFrame, predicted: pl.DataFrame) -> tuple[list[ClipRow], int]:
    m = config_table(measured).with_columns(_lr_key())
    p = (
        config_table(predicted)
        .with_columns(_lr_key())
        .select("batch_size", "lr_key", pl.col("avg_clip_frequency").alias("predicted"))
    )
    joined = m.join(p, on=["batch_size", "lr_key"], how="left")
    matched = joined.filter(pl.col("predicted").is_not_null() & pl.col("avg_clip_frequency").is_not_null())
    rows = [
        ClipRow(
            gradient_clip=float(r["gradient_clip"]),
            optimizer=r["optimizer"],
            batch_size=int(r["batch_size"]),
            lr=float(r["lr"]),
            measured=float(r["avg_clip_frequency"]),
            predicted=float(r["predicted"]),
            measured_regime=regime_of(r["avg_clip_frequency"]),
            predicted_regime=regime_of(r["predicted"]),
        )
        for r in matched.iter_rows(named=True)
    ]
    return rows, joined.height - matched.height


def _confusion(rows: Sequence[ClipRow]) -> dict[str, dict[str, int]]:
    table = {m: {p: 0 for p in REGIMES} for m in REGIMES}
    for r in rows:
        table[r.measured_regime][r.predicted_regime] += 1
    return table


def compare(
    summaries: pl.DataFrame,
    *,
    experiment: str,
    prediction: pl.DataFrame | None = None,
    prediction_meta: Mapping[str, Any] | None = None,
    prediction_source: str | None = None,
    b_noise: float | None = None,
    b_noise_source: str | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    run_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Comparison:
    """Measured against predicted (a trajectory table, schema.PREDICTION_COLUMNS) for one experiment.

    `warnings` name the steps and optimizer settings the prediction (its JSON's `steps` and
    `optimizer_settings`) simulated otherwise than the runs of the groups it is matched with trained
    (their `num_steps`, and `run_configs`: run_id -> that run's config, e.g. its config.json); see
    `setting_warnings`.

    B_noise of the noise-scale rule: the `b_noise` argument (described by `b_noise_source`, e.g. the
    measured B_simple of a calibration, see `b_simple_at_fit_step`), else the prediction JSON's
    `b_noise`, else its `b_simple` (McCandlish's B_simple = tr(Σ)/|G|² of the simulated NQM at
    initialisation). `prediction_meta` also supplies `baselines` (extra rules, see `score_rules`).
    Clip frequency and regimes are scored on clipped configs only: with clipping off both are
    trivially 0 / pre-saturation and would inflate the score.
    """
    meta = dict(prediction_meta or {})
    if b_noise is not None:
        b_noise = _optional_float(b_noise, "b_noise", "B_noise")
        b_noise_source = b_noise_source or "given explicitly"
    else:
        key = next((k for k in NOISE_SCALE_KEYS if meta.get(k) is not None), None)
        b_noise = _optional_float(meta[key], key) if key else None
        b_noise_source = None
        if key:
            b_noise_source = f"prediction JSON '{key}'"
            if key == "b_simple":
                b_noise_source += " (the simulated NQM's B_simple at initialisation)"
    check_summaries(summaries)
    pred_summaries = prediction_summaries(prediction) if prediction is not None else None
    if pred_summaries is not None:
        check_summaries(pred_summaries, what=f"prediction {prediction_source}" if prediction_source else "prediction")
    pred_groups = groups(pred_summaries) if pred_summaries is not None else []
    compared, clip_rows, unmatched = [], [], 0
    matched: dict[str, list[pl.DataFrame]] = {}  # predicted optimizer -> the measured groups matched with it
    for clip, opt, mgroup in groups(summaries):
        pgroup = _matching_group(clip, opt, pred_groups) if prediction is not None else None
        if pgroup is not None and pgroup.height:
            matched.setdefault(str(pgroup["optimizer"][0]), []).append(mgroup)
        m = measure_group(mgroup, n_boot=n_boot, seed=seed)
        p = measure_group(pgroup, n_boot=n_boot, seed=seed) if pgroup is not None else None
        rows = _lr_rows(m, p)
        measured_lr = {r.batch_size: r.measured for r in rows}
        pred_lr = _clean_predictions(rows)  # a grid-edge bound is no prediction to score
        pred_err = log10_rmse(pred_lr, measured_lr) if pred_lr else None
        rules = tuple(score_rules(measured_lr, b_noise=b_noise, extra=meta.get("baselines")))
        compared.append(GroupComparison(clip, opt, m, p, rows, pred_err, rules))
        if clip is not None and prediction is not None:
            if pgroup is None:
                unmatched += config_table(mgroup).height
            else:
                new_rows, missing = _clip_rows(mgroup, pgroup)
                clip_rows += new_rows
                unmatched += missing
    mae = float(np.mean([abs(r.predicted - r.measured) for r in clip_rows])) if clip_rows else None
    accuracy = float(np.mean([r.predicted_regime == r.measured_regime for r in clip_rows])) if clip_rows else None
    targets = _targets(compared, mae, accuracy, prediction is not None)
    if prediction is not None and compared and all(g.predicted is None for g in compared):
        # e.g. an adamw prediction against sgd runs: say so instead of five bare "not scored"
        had = ", ".join(group_label(c, o) for c, o, _ in pred_groups) or "no groups"
        want = ", ".join(group_label(g.gradient_clip, g.optimizer) for g in compared)
        why = f"the prediction has no group of the runs' clip and optimizer (prediction: {had}; runs: {want})"
        targets = tuple(replace(t, reason=t.reason or why) if t.passed is None else t for t in targets)
    warnings = [w for opt, parts in matched.items()
                for w in setting_warnings(pl.concat(parts, how="diagonal_relaxed"), meta, opt, run_configs)]
    return Comparison(
        experiment,
        prediction_source,
        tuple(compared),
        tuple(clip_rows),
        unmatched,
        mae,
        _confusion(clip_rows),
        accuracy,
        targets,
        b_noise,
        b_noise_source,
        tuple(dict.fromkeys(warnings)),
    )


def _setting_value(value: Any) -> Any:
    """A recorded setting as a comparable value (a number, a tuple of numbers, a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            v = float(value)
        except OverflowError:  # an integer beyond float's range: not a setting anyone ran
            return None
        return v if math.isfinite(v) else None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value:
        items = [_setting_value(v) for v in value]
        return tuple(items) if all(isinstance(v, float) for v in items) else None
    return None


def _same_setting(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_setting(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _setting_text(value: Any) -> str:
    """A setting as written: floats in their shortest round-trip form (repr), so that two values
    `_same_setting` tells apart never print alike (0.9 and 0.9000001, not "0.9" twice)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_setting_text(v) for v in value) + ")"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _mismatch(what: str, predicted: Any, runs: Sequence[Any], verb: str) -> str | None:
    """'The prediction simulated <what> <p>, the runs <verb> <r>.' where some run's value differs."""
    if predicted is None or not runs or all(_same_setting(predicted, r) for r in runs):
        return None
    distinct = list(dict.fromkeys(_setting_text(r) for r in sorted(set(runs), key=lambda v: (type(v).__name__, v))))
    used = distinct[0] if len(distinct) == 1 else ", ".join(distinct[:-1]) + " and " + distinct[-1]
    if what == "steps":
        return f"The prediction simulated {_setting_text(predicted)} steps, the runs {verb} {used}."
    return f"The prediction simulated {what} {_setting_text(predicted)}, the runs {verb} {used}."


def setting_warnings(
    runs: pl.DataFrame,
    prediction_meta: Mapping[str, Any] | None,
    optimizer: str,
    run_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Sentences naming where a prediction of `optimizer` simulated other steps or optimizer settings
    (COMPARED_SETTINGS of that optimizer) than `runs` (summary rows) trained: its JSON's `steps`
    against the runs' `num_steps` (else their configs' `steps`), its `optimizer_settings` against
    `run_configs` (run_id -> config). A setting either side does not record (older results or
    predictions) is passed over; so is a prediction JSON recorded for another optimizer."""
    meta = prediction_meta or {}
    if meta.get("optimizer") not in (None, optimizer):
        return []
    run_ids = runs["run_id"].to_list() if "run_id" in runs.columns else []
    configs = [c for c in map((run_configs or {}).get, run_ids) if isinstance(c, Mapping)]
    out = []
    steps = runs["num_steps"].drop_nulls().to_list() if "num_steps" in runs.columns else []
    if not steps:
        steps = [c.get("steps") for c in configs]
    steps = [v for v in map(_setting_value, steps) if isinstance(v, float)]
    predicted = _setting_value(meta.get("steps"))
    out.append(_mismatch("steps", predicted if isinstance(predicted, float) else None, steps, "trained"))
    settings = meta.get("optimizer_settings")
    settings = settings if isinstance(settings, Mapping) else {}
    for key in COMPARED_SETTINGS.get(optimizer, ()):
        # text only for the schedule's name; a number given as text ("0.9") is not a recorded setting
        kind = str if key == "schedule" else (float, tuple)
        used = [v for v in (_setting_value(c.get(key)) for c in configs) if isinstance(v, kind)]
        predicted = _setting_value(settings.get(key))
        out.append(_mismatch(SETTING_WORDS[key], predicted if isinstance(predicted, kind) else None, used, "used"))
    return [w for w in out if w]


def _optional_float(value: Any, key: str, where: str = "prediction JSON") -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise PyphaseError(f"{where}: '{key}' must be a positive number, got {value!r}")
    return float(value)


def b_simple_at_fit_step(calibration: Mapping[str, Any], name: str = "calibration") -> tuple[float, int]:
    """The MEASURED B_simple = tr(Σ)/|G|² of a `pyphase calibrate` file and the step it was measured at:
    `provenance.measurements.points[i].noise.b_simple` of the point whose step is `fit_step` (the
    point the NQM was fitted to). `name` (the file) goes into the one-line errors."""
    meas = ((calibration.get("provenance") or {}) if isinstance(calibration, Mapping) else {}).get("measurements")
    if not isinstance(meas, Mapping) or not isinstance(meas.get("points"), list):
        raise PyphaseError(f"{name}: no provenance.measurements.points (built-in parameters measure no B_simple)")
    step = meas.get("fit_step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise PyphaseError(f"{name}: provenance.measurements.fit_step must be an integer step, got {step!r}")
    point = next((p for p in meas["points"] if isinstance(p, Mapping) and p.get("step") == step), None)
    if point is None:
        raise PyphaseError(f"{name}: no measured point at fit_step {step}")
    value = _optional_float((point.get("noise") or {}).get("b_simple"), "noise.b_simple", f"{name} step {step}")
    if value is None:
        raise PyphaseError(f"{name}: the point at fit_step {step} has no noise.b_simple")
    return value, step


# --------------------------------------------------------------------------- issue 6 targets
def group_label(gradient_clip: float | None, optimizer: str | None) -> str:
    """Short name of a clip/optimizer group, e.g. 'clip=1/adamw' or 'clip=off'."""
    clip = "off" if gradient_clip is None else f"{gradient_clip:g}"
    return f"clip={clip}" + (f"/{optimizer}" if optimizer else "")


def _group_label(g: GroupComparison) -> str:
    return group_label(g.gradient_clip, g.optimizer)


def _edge_bs(rows: Sequence[LrOptRow]) -> str:
    return ", ".join(str(b) for b in sorted({r.batch_size for r in rows}))  # groups share batch sizes


def _not_scored_at_edge(name: str, crit: str, edge_rows: Sequence[LrOptRow]) -> Target:
    return Target(name, crit, f"not scored: {EDGE_REASON} (B={_edge_bs(edge_rows)})", None, EDGE_REASON)


def _not_scored_predicted_edge(name: str, crit: str, where: Sequence[str]) -> Target:
    return Target(name, crit, f"not scored: {PREDICTED_EDGE_REASON} ({'; '.join(where)})", None,
                  PREDICTED_EDGE_REASON)


def beta_scored(g: GroupComparison) -> bool:
    """Whether the β target scores this group: a prediction, two or more interior measured LR_opt,
    a fit on both sides and two or more interior predicted LR_opt in the predicted fit."""
    return (g.predicted is not None and sum(not r.measured_at_edge for r in g.lr_rows) >= 2
            and g.measured.fit is not None and g.predicted.fit is not None
            and sum(not o.at_edge for o in g.predicted.fit_optima) >= 2)


def _beta_target(groups: Sequence[GroupComparison]) -> Target:
    # A slope needs two measured optima; with fewer than two interior (non-edge) LR_opt values a
    # group's β is set by grid-edge bounds, so that group is not evidence and is left out. The same
    # holds for the prediction: a predicted line through fewer than two interior LR_opt values (all on
    # grid edges: β not predicted) is not scored.
    crit = f"predicted β inside measured 95% interval or within ±{BETA_TOLERANCE}"
    verdicts, parts, edge_rows, pred_edges = [], [], [], []
    for g in groups:
        if g.predicted is None:
            continue
        interior = [r for r in g.lr_rows if not r.measured_at_edge]
        if len(interior) < 2:  # also where the measurement has no fit (e.g. one LR per batch size)
            edge_rows += [r for r in g.lr_rows if r.measured_at_edge]
            continue
        if g.measured.fit is None or g.predicted.fit is None:
            continue
        if sum(not o.at_edge for o in g.predicted.fit_optima) < 2:
            pred_edges.append(f"{_group_label(g)}: β not predicted")
            continue
        bm, bp = g.measured.fit.beta, g.predicted.fit.beta
        inside = g.measured.ci_low is not None and g.measured.ci_low <= bp <= g.measured.ci_high
        verdicts.append(inside or abs(bp - bm) <= BETA_TOLERANCE)
        parts.append(f"{_group_label(g)}: {bp:.2f} vs {bm:.2f}")
    if not verdicts and edge_rows:
        return _not_scored_at_edge("beta", crit, edge_rows)
    if not verdicts and pred_edges:
        return _not_scored_predicted_edge("beta", crit, pred_edges)
    value = "; ".join(parts) or "not scored"
    if verdicts and pred_edges:
        value += f" ({'; '.join(pred_edges)}: {PREDICTED_EDGE_REASON})"
    return Target("beta", crit, value, all(verdicts) if verdicts else None)


def _bound_text(rows: Sequence[tuple[str, LrOptRow]], verb: str, worst: bool) -> str:
    """'bound LR_opt ≤ 3e-05 violated at B=32, 64 (worst x6.83)' per (group, side, bound), joined by '; '."""
    keyed: dict[tuple[str, str, str], list[LrOptRow]] = {}
    for label, r in rows:
        keyed.setdefault((label, BOUND_EDGES[r.predicted_edge], f"{r.predicted:.3g}"), []).append(r)
    parts = []
    for (label, sign, bound), rs in keyed.items():
        text = f"{label}bound LR_opt {sign} {bound} {verb} at B={_edge_bs(rs)}"
        if worst:
            text += f" (worst x{max(r.bound_violation for r in rs):.2f})"
        else:
            text += f" (within factor {LR_OPT_FACTOR_MAX})"
        parts.append(text)
    return "; ".join(parts)


def _lr_target(groups: Sequence[GroupComparison]) -> Target:
    # Each batch size is its own evidence: a ratio against a measured grid-edge bound, or against a
    # predicted line through bounds, is left out. A PREDICTED grid-edge bound (LR_opt <= lowest or >=
    # highest LR simulated) against an interior measured LR_opt can still be falsified: the target fails
    # when the measurement lies beyond it by more than the factor. A bound that holds verifies nothing,
    # so it alone never passes the target (not scored), but it does not stop clean rows from passing it.
    crit = f"LR_opt within factor {LR_OPT_FACTOR_MAX} for every B"
    several = len([g for g in groups if g.lr_rows]) > 1
    rows = [(g, r) for g in groups for r in g.lr_rows if r.ratio is not None or r.predicted_at_edge]
    edge_rows = [r for _, r in rows if r.measured_at_edge]
    bound_rows = [(f"{_group_label(g)}: " if several else "", r) for g, r in rows if r.bound_violation is not None]
    violated = [(lab, r) for lab, r in bound_rows if r.bound_violation > LR_OPT_FACTOR_MAX]
    held = [(lab, r) for lab, r in bound_rows if r.bound_violation <= LR_OPT_FACTOR_MAX]
    # predicted edge rows that bound nothing on one side: a line through bounds, no value, a single LR
    unsided = [r for _, r in rows if r.predicted_at_edge and not r.measured_at_edge and r.bound_violation is None]
    ratios = [r.ratio for _, r in rows if not r.measured_at_edge and not r.predicted_at_edge]
    if not ratios and not violated and edge_rows:
        return _not_scored_at_edge("lr_opt", crit, edge_rows)
    if not ratios and not violated and (held or unsided):
        target = _not_scored_predicted_edge("lr_opt", crit, [f"B={_edge_bs([r for _, r in held] + unsided)}"])
        if held:
            target = replace(target, value=f"{target.value}; {_bound_text(held, 'holds', worst=False)}")
        return target
    worst = max((max(x, 1 / x) for x in ratios), default=None)
    parts = [f"worst factor {worst:.2f}"] if worst is not None else []
    if violated:
        parts.append(_bound_text(violated, "violated", worst=True))
    if held:
        parts.append(_bound_text(held, "holds", worst=False))
    value = "; ".join(parts) or "not scored"
    if parts and edge_rows:
        value += f" (B={_edge_bs(edge_rows)} left out: {EDGE_REASON})"
    if parts and unsided:
        value += f" (B={_edge_bs(unsided)} left out: {PREDICTED_EDGE_REASON})"
    if violated:
        passed: bool | None = False
    elif worst is not None:
        passed = worst <= LR_OPT_FACTOR_MAX
    else:
        passed = None
    return Target("lr_opt", crit, value, passed)


def _rules_target(groups: Sequence[GroupComparison]) -> Target:
    # Rules are anchored at the smallest measured B (zero error there by construction), so a group is
    # evidence only when that anchor and at least one other B have interior LR_opt; errors are then
    # taken over the interior batch sizes only, and among those over the ones with a clean predicted
    # LR_opt (no grid-edge bound behind it), prediction and rules alike.
    crit = "prediction's log10 LR_opt RMSE below every rule's"
    verdicts, parts, edge_rows, pred_edges = [], [], [], []
    for g in groups:
        if g.prediction_log10_rmse is None and not any(r.predicted_at_edge for r in g.lr_rows):
            continue
        if not g.lr_rows:
            continue
        interior = {r.batch_size: r.measured for r in g.lr_rows if not r.measured_at_edge}
        anchor = min(r.batch_size for r in g.lr_rows)
        if anchor not in interior or len(interior) < 2:
            edge_rows += [r for r in g.lr_rows if r.measured_at_edge]
            continue
        pred = _clean_predictions(g.lr_rows)
        scored = {b: lr for b, lr in interior.items() if b in pred}
        if not any(b != anchor for b in scored):
            at_edge = [r for r in g.lr_rows if r.predicted_at_edge and r.batch_size != anchor]
            if at_edge:  # else the prediction simply has no value past the anchor: plain "not scored"
                pred_edges.append(f"{_group_label(g)}: B={_edge_bs(at_edge)}")
            continue
        pred_err = log10_rmse(pred, scored)
        rule_errs = [e for e in (log10_rmse(r.lr_opt, scored) for r in g.rules) if math.isfinite(e)]
        if not rule_errs or not math.isfinite(pred_err):
            continue
        verdicts.append(pred_err < min(rule_errs))
        text = f"{_group_label(g)}: {pred_err:.3f} vs best rule {min(rule_errs):.3f}"
        if len(scored) < len(g.lr_rows):
            text += f" (over B={', '.join(map(str, sorted(scored)))}; the rest at the grid edge)"
        parts.append(text)
    if not verdicts and edge_rows:
        return _not_scored_at_edge("rules", crit, edge_rows)
    if not verdicts and pred_edges:
        return _not_scored_predicted_edge("rules", crit, pred_edges)
    return Target("rules", crit, "; ".join(parts) or "not scored", all(verdicts) if verdicts else None)


def _targets(
    groups: Sequence[GroupComparison], mae: float | None, accuracy: float | None, has_prediction: bool
) -> tuple[Target, ...]:
    if not has_prediction:
        return tuple(
            Target(n, "needs a prediction", "no prediction given", None)
            for n in ("beta", "clip_frequency", "lr_opt", "regime", "rules")
        )
    return (
        _beta_target(groups),
        Target(
            "clip_frequency",
            f"clip-frequency MAE <= {CLIP_MAE_MAX}",
            "not scored" if mae is None else f"MAE {mae:.3f}",
            None if mae is None else mae <= CLIP_MAE_MAX,
        ),
        _lr_target(groups),
        Target(
            "regime",
            f"regime right for >= {REGIME_ACCURACY_MIN:.0%} of configs",
            "not scored" if accuracy is None else f"{accuracy:.0%}",
            None if accuracy is None else accuracy >= REGIME_ACCURACY_MIN,
        ),
        _rules_target(groups),
    )
