"""Figures (matplotlib, Agg backend, PNG): LR_opt against batch size with the fit, its interval band
and the predicted line; loss and clip-frequency heatmaps over batch x LR; loss curves against the
corpus's entropy milestones; predicted against measured scatter. Each function draws one figure
from analysis objects or frames and returns the path it wrote."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on machines without a display

import numpy as np
import polars as pl
from matplotlib import colors, ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pyphase.analysis import (
    CLIP_MAE_MAX,
    CONFIG_KEYS,
    LR_OPT_FACTOR_MAX,
    NO_OPTIMUM_EDGES,
    BetaMeasurement,
    BudgetBeta,
    Comparison,
    LrOptimum,
    group_label,
    groups,
)
from pyphase.results import CorpusEntropies
from pyphase.schema import REGIME_SATURATION_AT, REGIME_TRANSITION_AT, REGIMES, regime_of

DPI = 100  # small PNGs for the repository; every label still readable at this size
# where the true optimum may lie; a flat curve ("flat") has no LR_opt (NaN) and draws no marker
_EDGE_MARKERS = {"low": "v", "high": "^", "only": "s"}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _color(i: int) -> str:
    return f"C{i % 10}"


# --------------------------------------------------------------------------- LR_opt vs B
def _band(m: BetaMeasurement, bs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lines of slope ci_low and ci_high through the fit's centroid (where a least-squares line pivots)."""
    used = m.fit_optima  # not a batch size with one LR or a flat curve: those are not on the line
    x0 = np.mean([math.log10(o.batch_size) for o in used])
    y0 = math.log10(m.fit.c) + m.fit.beta * x0
    lines = [10 ** (y0 + s * (np.log10(bs) - x0)) for s in (m.ci_low, m.ci_high)]
    return np.minimum(*lines), np.maximum(*lines)


def _draw_measured(ax, m: BetaMeasurement, color: str) -> None:
    for o in m.optima:
        if not math.isfinite(o.lr_opt):
            continue
        marker = _EDGE_MARKERS.get(o.edge or "", "o" if o.refined else "D")
        face = "none" if o.at_edge else color
        ax.plot(o.batch_size, o.lr_opt, marker=marker, ms=9, mec=color, mfc=face, ls="none", zorder=3)
        if o.refined:
            ax.plot(o.batch_size, o.grid_lr, marker="_", ms=12, color=color, ls="none", alpha=0.6)


def _marker_kind(o: LrOptimum) -> str:
    return o.edge or ("refined" if o.refined else "grid")


_MARKER_LEGEND: dict[str, dict[str, str]] = {
    "refined": {"marker": "o", "label": "parabola-refined minimum"},
    "grid": {"marker": "D", "label": "grid value (neighbour diverged / flat)"},
    "high": {"marker": "^", "mfc": "none", "label": "at high grid edge (LR_opt ≥)"},
    "low": {"marker": "v", "mfc": "none", "label": "at low grid edge (LR_opt ≤)"},
    "only": {"marker": "s", "mfc": "none", "label": "only one LR tested"},
}


def _marker_legend(measured: Sequence[BetaMeasurement]) -> list[Line2D]:
    """Legend entries for the marker kinds actually drawn (an unused entry only clutters)."""
    drawn = {_marker_kind(o) for m in measured for o in m.optima if math.isfinite(o.lr_opt)}
    out = [Line2D([], [], color="k", ls="none", **_MARKER_LEGEND[k]) for k in _MARKER_LEGEND if k in drawn]
    if "refined" in drawn:
        out.append(Line2D([], [], marker="_", color="k", ls="none", label="grid argmin (naive)"))
    return out


def _fit_label(m: BetaMeasurement) -> str:
    ci = f" [{m.ci_low:.2f}, {m.ci_high:.2f}]" if m.ci_low is not None else " (interval undefined)"
    edges = sum(o.at_edge for o in m.fit_optima)  # a B left out of the fit bounds nothing
    bound = f"; only a bound: {edges} of {m.fit.n} B at a grid edge" if edges else ""
    left = [o.batch_size for o in m.optima if o.edge in NO_OPTIMUM_EDGES]  # drawn, but not on the line
    out = f"; B={', '.join(map(str, left))} not in the fit" if left else ""
    return f"{group_label(m.gradient_clip, m.optimizer)}: β={m.fit.beta:.2f}{ci}{bound}{out}"


def plot_lr_opt(
    measured: Sequence[BetaMeasurement],
    path: Path,
    *,
    predicted: Sequence[BetaMeasurement | None] = (),
    predicted_label: str = "predicted",
    title: str = "",
) -> Path:
    """LR_opt vs B (log-log): measured points (hollow = grid edge, ▲ ≥ / ▼ ≤), fit, 95% band, prediction."""
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    preds = (list(predicted) + [None] * len(measured))[: len(measured)]
    for i, (m, p) in enumerate(zip(measured, preds, strict=True)):
        color = _color(i)
        _draw_measured(ax, m, color)
        bs = np.array(sorted({o.batch_size for o in m.optima}), float)
        if m.fit is not None and not m.all_at_edge:  # all-edge "fits" measure nothing
            grid = np.geomspace(bs.min() / 1.3, bs.max() * 1.3, 50)
            ax.plot(grid, m.fit.lr_at(grid), color=color, label=_fit_label(m))
            if m.ci_low is not None:
                lo, hi = _band(m, grid)
                ax.fill_between(grid, lo, hi, color=color, alpha=0.15, lw=0)
        else:
            label = f"{group_label(m.gradient_clip, m.optimizer)}: no β (no interior optimum)"
            ax.plot([], [], color=color, marker="s", mfc="none", ls="none", label=label)
        if p is not None and p.fit is not None and not p.all_at_edge:  # an all-edge "fit" predicts nothing
            grid = np.geomspace(bs.min() / 1.3, bs.max() * 1.3, 50)
            label = f"{predicted_label} {group_label(p.gradient_clip, p.optimizer)}: β={p.fit.beta:.2f}"
            ax.plot(grid, p.fit.lr_at(grid), color=color, ls="--", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    all_b = [o.batch_size for m in measured for o in m.optima]
    if all_b:  # room around the outermost points, which would otherwise sit on the frame
        ax.set_xlim(min(all_b) / 1.3, max(all_b) * 1.3)
    ax.margins(y=0.12)
    all_bs = sorted({o.batch_size for m in measured for o in m.optima})
    ax.set_xticks(all_bs, [str(b) for b in all_bs])
    ax.xaxis.set_minor_locator(ticker.NullLocator())  # only the measured batch sizes as ticks
    ax.set_xlabel("batch size B")
    ax.set_ylabel("LR_opt")
    handles, _ = ax.get_legend_handles_labels()
    fig.legend(handles=handles + _marker_legend(measured), fontsize=8, loc="outside lower center", ncol=2,
               frameon=False)  # below the axes: never over a point
    ax.set_title(title or "LR_opt vs batch size (band: 95% interval of β)")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- β along training
def plot_beta_along(along: Sequence[BudgetBeta], path: Path, *, title: str = "") -> Path:
    """β (with its 95% interval) against the training step taken as the budget, one line per
    clip/optimizer group; hollow markers where some batch size's minimum is on a grid edge (a bound),
    none where every one is; the lowest val loss at each step on a second axis; β = 0, 0.5, 1 marked."""
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    labels = list(dict.fromkeys(group_label(b.measurement.gradient_clip, b.measurement.optimizer) for b in along))
    for i, label in enumerate(labels):
        color = _color(i)
        mine = [b for b in along if group_label(b.measurement.gradient_clip, b.measurement.optimizer) == label]
        pts = [b for b in mine if b.measurement.fit is not None and not b.measurement.all_at_edge]
        if pts:
            x = np.array([b.step for b in pts], float)
            y = np.array([b.measurement.fit.beta for b in pts])
            ax.plot(x, y, color=color, label=f"{label}: β")
            with_ci = [b for b in pts if b.measurement.ci_low is not None]
            if with_ci:
                ax.fill_between([b.step for b in with_ci], [b.measurement.ci_low for b in with_ci],
                                [b.measurement.ci_high for b in with_ci], color=color, alpha=0.15, lw=0)
            edge = np.array([b.measurement.any_at_edge for b in pts])
            ax.plot(x[~edge], y[~edge], "o", color=color, ms=4)
            ax.plot(x[edge], y[edge], "o", color=color, mfc="none", ms=5)
        ax2.plot([b.step for b in mine], [b.best_loss for b in mine], color=color, ls=":", alpha=0.7,
                 label=f"{label}: lowest val loss")
    for ref in (0.0, 0.5, 1.0):
        ax.axhline(ref, color="0.6", lw=0.8, ls="--")
        ax.annotate(f"β={ref:g}", (1.0, ref), xycoords=("axes fraction", "data"), fontsize=7, color="0.4",
                    ha="right", va="bottom")
    ax.set_xlabel("training step used as the budget")
    ax.set_ylabel("β (LR_opt ∝ B^β), 95% band")
    ax2.set_ylabel("lowest val loss (nats/char)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    if any(b.measurement.any_at_edge for b in along if b.measurement.fit is not None and not b.measurement.all_at_edge):
        handles.append(Line2D([], [], marker="o", color="0.3", mfc="none", ls="none", label="some B on a grid edge"))
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=2, frameon=False)  # off the data
    ax.set_title(title or "β along training", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- heatmaps
def _grid(group: pl.DataFrame, column: str) -> tuple[list[int], list[float], np.ndarray]:
    bs = sorted(group["batch_size"].unique().to_list())
    lrs = sorted(group["lr"].unique().to_list())
    z = np.full((len(bs), len(lrs)), np.nan)
    for r in group.iter_rows(named=True):
        v = r[column]
        z[bs.index(r["batch_size"]), lrs.index(r["lr"])] = np.nan if v is None else v
    return bs, lrs, z


def _one_lr_per_batch(parts: Sequence[tuple[float | None, str | None, pl.DataFrame]]) -> bool:
    """True for a threshold sweep: several clip/optimizer groups, each with one LR per batch size
    (seed Phase 3b). Such an experiment is drawn as one panel, groups across, (B, LR) down."""
    return len(parts) > 1 and all(
        g.group_by("batch_size").agg(pl.col("lr").n_unique())["lr"].max() == 1 for _, _, g in parts
    )


def _sweep_grid(
    parts: Sequence[tuple[float | None, str | None, pl.DataFrame]], column: str
) -> tuple[list[str], list[str], np.ndarray]:
    """Rows (B, LR), columns groups, cell = `column` (NaN where a group lacks that row)."""
    rows = sorted({(int(r["batch_size"]), float(r["lr"])) for _, _, g in parts for r in g.iter_rows(named=True)})
    z = np.full((len(rows), len(parts)), np.nan)
    for j, (_, _, g) in enumerate(parts):
        for r in g.iter_rows(named=True):
            v = r[column]
            z[rows.index((int(r["batch_size"]), float(r["lr"]))), j] = np.nan if v is None else v
    labels = [f"B={b}, LR={lr:g}" for b, lr in rows]
    return labels, [group_label(c, o) for c, o, _ in parts], z


def _diverged_text(n_div: float, n_seeds: float, n_nonfinite: float | None = None) -> str:
    """The label of a cell with `n_div` of `n_seeds` seeds at an infinite effective loss. Of them,
    `n_nonfinite` really diverged (loss or gradient norm non-finite: "✗ diverged"); the rest ended at
    a finite loss with converged = false ("not converged", no ✗). Without `n_nonfinite` (a table
    from before config_table split the count) every one is called diverged, as it was."""
    nf = n_div if n_nonfinite is None or not np.isfinite(n_nonfinite) else min(n_nonfinite, n_div)
    nc = n_div - nf
    if nc <= 0:
        return "✗ diverged" if nf >= n_seeds else f"✗ {nf:.0f} of {n_seeds:.0f}\nseeds diverged"
    if nf <= 0:
        return "not converged" if nc >= n_seeds else f"{nc:.0f} of {n_seeds:.0f} seeds\nnot converged"
    of = "" if n_div >= n_seeds else f"\n(of {n_seeds:.0f} seeds)"
    return f"✗ {nf:.0f} diverged,\n{nc:.0f} not converged{of}"


def _facets(parts: Sequence[tuple[float | None, str | None, pl.DataFrame]]) -> tuple[Figure, list]:
    """One panel per group, sized so that every cell's annotation fits (0.75 in per LR, 0.5 per B)."""
    n = max(len(parts), 1)
    n_lr = max((g["lr"].n_unique() for _, _, g in parts), default=1)
    n_b = max((g["batch_size"].n_unique() for _, _, g in parts), default=1)
    width, height = max(5.0, 0.75 * n_lr + 2.5), max(3.5, 0.5 * n_b + 2.0)
    cols = 1 if width > 9 else min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _label_axes(ax, bs: Sequence[int], lrs: Sequence[float], title: str) -> None:
    ax.set_xticks(range(len(lrs)), [f"{v:.3g}" for v in lrs], rotation=45, ha="right")
    ax.set_yticks(range(len(bs)), [str(b) for b in bs])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("batch size")
    ax.set_title(title)


def _draw_loss_cells(fig: Figure, ax, z: np.ndarray, div: np.ndarray, seeds: np.ndarray, *,
                     per_row: bool = False, limits: tuple[float, float] | None = None,
                     nonfinite: np.ndarray | None = None) -> None:
    """Loss cells (darker = worse); a cell with any seed at an infinite effective loss (`div`,
    config_table's n_diverged) is blank and labelled in red: "✗ diverged" where some of them really
    diverged (`nonfinite`, n_nonfinite), "not converged" where they ended at a finite loss with
    converged = false (`_diverged_text`; without `nonfinite` every one is called diverged);
    bold = the row's minimum (each batch size's grid argmin, or the best group of a sweep row).
    The numbers are the losses; the colours are the losses on `limits` (one scale shared by every
    panel of a figure), or with `per_row` each cell's excess over its row's best, so that rows of
    very different losses (B = 32 and 256 in phase3b) each show their own differences."""
    shown = np.where(div > 0, np.nan, z)
    finite = shown[np.isfinite(shown)]
    if per_row:
        with np.errstate(all="ignore"):
            colour = shown - np.nanmin(np.where(np.isfinite(shown), shown, np.nan), axis=1, keepdims=True)
        lo, hi = 0.0, float(np.nanmax(colour)) if np.isfinite(colour).any() else 1.0
        label = "val loss above its row's best (nats/char)"
    else:
        colour = shown
        lo, hi = limits if limits is not None else ((finite.min(), finite.max()) if finite.size else (None, None))
        label = "final val loss (nats/char)"
    im = ax.imshow(colour, cmap="viridis_r", aspect="auto", vmin=lo, vmax=hi if hi != lo else None)
    masked = np.where(np.isfinite(shown), shown, np.inf)
    best = {(i, int(np.argmin(row))) for i, row in enumerate(masked) if np.isfinite(row).any()}
    for (i, j), v in np.ndenumerate(z):
        if div[i, j] > 0:
            nf = None if nonfinite is None else nonfinite[i, j]
            ax.text(j, i, _diverged_text(div[i, j], seeds[i, j], nf), ha="center", va="center", color="red", fontsize=7)
        elif np.isfinite(v):
            weight = "bold" if (i, j) in best else "normal"
            c = colour[i, j]
            mid = (lo + hi) / 2 if lo is not None and hi is not None else np.nanmean(finite)
            color = "w" if c > mid else "k"
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color=color, weight=weight)
    fig.colorbar(im, ax=ax, label=label)


def _count_columns(df: pl.DataFrame) -> pl.DataFrame:
    """n_diverged, n_seeds and n_nonfinite as floats; a table without n_nonfinite (from before
    config_table told diverged from not-converged runs) gets n_diverged there: all called diverged."""
    nonfinite = pl.col("n_nonfinite") if "n_nonfinite" in df.columns else pl.col("n_diverged")
    return df.with_columns(pl.col("n_diverged").cast(pl.Float64), pl.col("n_seeds").cast(pl.Float64),
                           nonfinite.cast(pl.Float64).alias("n_nonfinite"))


_OUTCOME_KEY = "✗ diverged: loss or gradient norm went non-finite;\nnot converged: finite loss, converged = false"


def _outcome_key(configs: pl.DataFrame) -> str:
    """A title line telling the two blank-cell labels apart, where some cell says "not converged"."""
    if "n_nonfinite" not in configs.columns or not (configs["n_diverged"] > configs["n_nonfinite"]).any():
        return ""
    return "\n" + _OUTCOME_KEY


def plot_loss_heatmap(configs: pl.DataFrame, path: Path, *, title: str = "") -> Path:
    """Seed-mean final val loss over B x LR (one panel per clip/optimizer group; a threshold sweep
    with one LR per B is one panel, groups across). A cell with seeds at an infinite effective loss
    is blank: "✗ diverged" for seeds whose loss or gradient norm went non-finite (n_nonfinite),
    "not converged" for seeds that ended at a finite loss with converged = false (n_not_converged);
    a table without n_nonfinite calls all of them (n_diverged) diverged."""
    parts = groups(configs)
    if _one_lr_per_batch(parts):
        counted = [(c, o, _count_columns(g)) for c, o, g in parts]
        rows, cols, z = _sweep_grid(counted, "final_val_loss")
        div, seeds = _sweep_grid(counted, "n_diverged")[2], _sweep_grid(counted, "n_seeds")[2]
        nonfinite = _sweep_grid(counted, "n_nonfinite")[2]
        fig = Figure(figsize=(max(5.0, 1.3 * len(cols) + 3), max(2.8, 0.6 * len(rows) + 1.8)), layout="constrained")
        ax = fig.add_subplot()
        _draw_loss_cells(fig, ax, z, div, seeds, per_row=True, nonfinite=nonfinite)
        _label_sweep_axes(ax, rows, cols)
        fig.suptitle(title or "Final validation loss (mean over seeds; bold = best group of each row;\n"
                              "colour: how far above its row's best)" + _outcome_key(configs))
        return _save(fig, path)
    fig, axes = _facets(parts)
    ok = configs.filter((pl.col("n_diverged") == 0) & pl.col("final_val_loss").is_finite())["final_val_loss"]
    limits = (float(ok.min()), float(ok.max())) if ok.len() else None  # one scale for every panel
    for ax, (clip, opt, g) in zip(axes, parts, strict=False):  # an empty figure keeps one blank panel
        bs, lrs, z = _grid(g, "final_val_loss")
        counted = _count_columns(g)
        div, seeds = _grid(counted, "n_diverged")[2], _grid(counted, "n_seeds")[2]
        _draw_loss_cells(fig, ax, z, div, seeds, limits=limits, nonfinite=_grid(counted, "n_nonfinite")[2])
        _label_axes(ax, bs, lrs, group_label(clip, opt))
    fig.suptitle(title or "Final validation loss (mean over seeds; bold = grid minimum of each batch size)"
                 + _outcome_key(configs))
    return _save(fig, path)


def _label_sweep_axes(ax, rows: Sequence[str], cols: Sequence[str]) -> None:
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("clip threshold / optimizer")


def _regime_borders(ax, z: np.ndarray) -> None:
    """Thick lines between neighbouring cells of different regimes."""
    reg = np.vectorize(lambda v: -1 if np.isnan(v) else REGIMES.index(regime_of(v)))(z)
    n, m = reg.shape
    for i in range(n):
        for j in range(m):
            if j + 1 < m and reg[i, j] >= 0 and reg[i, j + 1] >= 0 and reg[i, j] != reg[i, j + 1]:
                ax.plot([j + 0.5, j + 0.5], [i - 0.5, i + 0.5], color="c", lw=2.5)
            if i + 1 < n and reg[i, j] >= 0 and reg[i + 1, j] >= 0 and reg[i, j] != reg[i + 1, j]:
                ax.plot([j - 0.5, j + 0.5], [i + 0.5, i + 0.5], color="c", lw=2.5)


_CLIP_NORM = colors.BoundaryNorm(
    [0, 0.1, 0.2, 0.3, 0.4, REGIME_TRANSITION_AT, 0.6, 0.7, 0.8, 0.9, REGIME_SATURATION_AT, 1.0], 256
)
_SHORT_REGIME = {"pre-saturation": "pre", "transition": "trans", "saturation": "sat"}


def clip_text(v: float) -> str:
    """A clip frequency in two decimals, rounded down, so that the text never crosses a regime
    threshold that the value has not (0.9863 is "0.98", in transition; rounded it read 0.99)."""
    if not math.isfinite(v):
        return "–"
    return f"{math.floor(v * 100 + 1e-9) / 100:.2f}"


def _draw_clip_cells(fig: Figure, ax, z: np.ndarray, borders: bool = True) -> None:
    im = ax.imshow(z, cmap="magma", norm=_CLIP_NORM, aspect="auto")
    for (i, j), v in np.ndenumerate(z):
        if np.isfinite(v):
            text = f"{clip_text(v)}\n{_SHORT_REGIME[regime_of(v)]}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    if borders:
        _regime_borders(ax, z)
    cb = fig.colorbar(im, ax=ax, label="clip frequency")
    for t in (REGIME_TRANSITION_AT, REGIME_SATURATION_AT):
        cb.ax.axhline(t, color="c", lw=2)


def plot_clip_heatmap(configs: pl.DataFrame, path: Path, *, title: str = "") -> Path:
    """Seed-mean clip frequency over B x LR for clipped groups; cyan lines separate regimes (a
    threshold sweep with one LR per B is one panel, thresholds across)."""
    parts = [p for p in groups(configs) if p[0] is not None]
    if _one_lr_per_batch(parts):
        rows, cols, z = _sweep_grid(parts, "avg_clip_frequency")
        fig = Figure(figsize=(max(5.0, 1.3 * len(cols) + 3), max(2.8, 0.6 * len(rows) + 1.8)), layout="constrained")
        ax = fig.add_subplot()
        _draw_clip_cells(fig, ax, z, borders=False)  # neighbours differ in threshold: no regime border meaning
        _label_sweep_axes(ax, rows, cols)
        axes = []
    else:
        fig, axes = _facets(parts)
    if not parts:
        axes[0].text(0.5, 0.5, "no clipped configs", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (clip, opt, g) in zip(axes, parts, strict=False):  # an empty figure keeps one blank panel
        bs, lrs, z = _grid(g, "avg_clip_frequency")
        _draw_clip_cells(fig, ax, z)
        _label_axes(ax, bs, lrs, group_label(clip, opt))
    fig.suptitle(
        title
        or f"Clip frequency (regimes: < {REGIME_TRANSITION_AT} pre-saturation, "
        f"< {REGIME_SATURATION_AT} transition, else saturation)"
    )
    return _save(fig, path)


# --------------------------------------------------------------------------- loss curves
BINS = 200  # train loss is averaged into this many step bins per run: readable, and smooths noise


def _binned_curves(steps: pl.DataFrame, summaries: pl.DataFrame) -> pl.DataFrame:
    """Seed-mean train loss (binned) and val loss per config and step. A diverged run contributes
    only its steps before divergence: after it the trainer freezes the model, whose losses would
    otherwise flatten the seed mean."""
    extra = ["diverged_step"] if "diverged_step" in summaries.columns else []
    keys = summaries.select(["run_id", *CONFIG_KEYS, *extra])
    finite = pl.col("train_loss").is_finite().fill_null(True) & pl.col("val_loss").is_finite().fill_null(True)
    alive = (pl.col("diverged_step").is_null() | (pl.col("step") <= pl.col("diverged_step"))) if extra else pl.lit(True)
    # the config's LR comes from its summary: a step's own `lr` is the schedule's (null on eval-only rows)
    df = steps.drop("lr", strict=False).join(keys, on="run_id", how="inner").filter(finite & alive)
    width = max(int(df["step"].max() or 1) // BINS, 1)
    train = (
        df.filter(pl.col("train_loss").is_not_null())
        .with_columns(((pl.col("step") // width) * width + width // 2).alias("step"))
        .group_by([*CONFIG_KEYS, "step"])
        .agg(pl.col("train_loss").mean())
    )
    val = df.filter(pl.col("val_loss").is_not_null()).group_by([*CONFIG_KEYS, "step"]).agg(pl.col("val_loss").mean())
    return train.join(val, on=[*CONFIG_KEYS, "step"], how="full", coalesce=True, nulls_equal=True).sort(
        [*CONFIG_KEYS, "step"]
    )


def _diverged_steps(summaries: pl.DataFrame, config: dict) -> list[int]:
    """diverged_step of each run of `config` (clip, optimizer, B, LR) that diverged."""
    if "diverged_step" not in summaries.columns:
        return []
    same = pl.all_horizontal(pl.col(k).eq_missing(config[k]) for k in CONFIG_KEYS)
    return [int(d) for d in summaries.filter(same)["diverged_step"].drop_nulls().to_list()]


def _milestones(ax, entropies: CorpusEntropies | None) -> None:
    if entropies is None:
        return
    ax.axhline(entropies.unigram, color="gray", ls="--", lw=1)
    ax.axhline(entropies.bigram, color="gray", ls=":", lw=1)
    if entropies.vocab_size:
        ax.axhline(math.log(entropies.vocab_size), color="gray", ls="-.", lw=1)


def _clamp_top(ax, entropies: CorpusEntropies | None) -> None:
    """Keep a diverging run from squashing the others: cut the axis a nat above the uniform loss."""
    if entropies is None:
        return
    ceiling = (math.log(entropies.vocab_size) if entropies.vocab_size else entropies.unigram) + 1.0
    if ax.get_ylim()[1] > ceiling:
        ax.set_ylim(top=ceiling)


MAX_LR_LEGEND = 8  # up to this many LRs get a legend entry each; more get a colour bar


def _panel_layout(n: int) -> tuple[int, int]:
    cols = 2 if n in (2, 4) else min(n, 3)
    return math.ceil(n / cols), cols


def plot_loss_curves(
    steps: pl.DataFrame, summaries: pl.DataFrame, path: Path, *, entropies: CorpusEntropies | None, title: str = ""
) -> Path:
    """Train (thin, binned) and val (markers) loss vs step (seed means) with the corpus's unigram,
    bigram and uniform (ln V) entropy lines, on one shared loss axis. One panel per (group, B), one
    colour per LR; a threshold sweep with one LR per B gets one panel per (B, LR), one colour per group."""
    curves = _binned_curves(steps, summaries)
    sweep = _one_lr_per_batch(groups(summaries)) if summaries.height else False
    panel_keys = ["batch_size", "lr"] if sweep else ["gradient_clip", "optimizer", "batch_size"]
    panels = curves.select(panel_keys).unique().sort(panel_keys, nulls_last=False)
    n = max(panels.height, 1)
    rows, cols = _panel_layout(n)
    fig = Figure(figsize=(4.6 * cols + 1.2, 3.2 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    lrs = sorted(curves["lr"].unique().to_list()) or [1.0]
    norm = colors.LogNorm(min(lrs), max(lrs) * (1.0001 if len(lrs) == 1 else 1))
    cmap = matplotlib.colormaps["plasma"]
    group_keys = (
        curves.select(["gradient_clip", "optimizer"]).unique().sort(["gradient_clip", "optimizer"], nulls_last=False)
    )
    group_color = {(g["gradient_clip"], g["optimizer"]): _color(i) for i, g in enumerate(group_keys.iter_rows(named=True))}

    def color_of(r: dict) -> str | tuple:
        if sweep:
            return group_color[(r["gradient_clip"], r["optimizer"])]
        return cmap(norm(r["lr"]) * 0.85) if len(lrs) > 1 else "C0"

    diverged_drawn = False
    for ax, p in zip(axes, panels.iter_rows(named=True), strict=False):
        sel = curves.filter(pl.all_horizontal(pl.col(k).eq_missing(p[k]) for k in panel_keys))
        for _, c in sel.group_by(["gradient_clip", "optimizer", "lr"], maintain_order=True):
            color = color_of(c.row(0, named=True))
            t = c.filter(pl.col("train_loss").is_not_null())
            ax.plot(t["step"], t["train_loss"], color=color, lw=0.8, alpha=0.6)
            v = c.filter(pl.col("val_loss").is_not_null())
            ax.plot(v["step"], v["val_loss"], color=color, marker="o", ms=3, lw=1.5)
            # each run of this config that diverged: a red x at its first non-finite step, on the curve,
            # so that a curve that ends is not read as a shorter run
            r0 = c.row(0, named=True)
            for d in _diverged_steps(summaries, r0):
                before = t.filter(pl.col("step") <= d + 1)
                if before.height:
                    ax.plot(d + 1, before["train_loss"][-1], "x", color="red", ms=8, mew=2, zorder=4)
                    diverged_drawn = True
        _milestones(ax, entropies)
        if sweep:
            ax.set_title(f"B={p['batch_size']}, LR={p['lr']:g}", fontsize=9)
        else:
            ax.set_title(f"B={p['batch_size']}, {group_label(p['gradient_clip'], p['optimizer'])}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/char)")
        ax.grid(True, alpha=0.3)
    for ax in axes[panels.height :]:
        ax.set_axis_off()
    if panels.height == 0:
        axes[0].set_axis_on()
        axes[0].text(0.5, 0.5, "no step metrics", ha="center", va="center", transform=axes[0].transAxes)
    else:
        _clamp_top(axes[0], entropies)  # shared y: one call limits every panel
    legend = [
        Line2D([], [], color="k", lw=0.8, label="train (binned)"),
        Line2D([], [], color="k", marker="o", ms=3, label="val"),
    ]
    if sweep:
        legend += [Line2D([], [], color=c, lw=2, label=group_label(*k)) for k, c in group_color.items()]
    elif 1 < len(lrs) <= MAX_LR_LEGEND:
        legend += [Line2D([], [], color=cmap(norm(v) * 0.85), lw=2, label=f"LR {v:g}") for v in lrs]
    elif len(lrs) > MAX_LR_LEGEND:
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=list(axes), label="learning rate", shrink=0.6)
    if diverged_drawn:
        legend.append(Line2D([], [], color="red", marker="x", mew=2, ls="none", label="a run diverged (seed mean after it: fewer seeds)"))
    if entropies is None:  # the milestone lines need the corpus's entropies, which these runs did not record
        legend.append(Line2D([], [], color="none", label="unigram/bigram lines: corpus entropies not recorded"))
    if entropies is not None:
        legend += [
            Line2D([], [], color="gray", ls="--", label=f"unigram entropy {entropies.unigram:.3f}"),
            Line2D([], [], color="gray", ls=":", label=f"bigram entropy {entropies.bigram:.3f}"),
        ]
        if entropies.vocab_size:
            legend.append(Line2D([], [], color="gray", ls="-.", label=f"ln V = {math.log(entropies.vocab_size):.3f}"))
    fig.legend(handles=legend, loc="outside lower center", ncol=min(len(legend), 5), fontsize=8)
    fig.suptitle(title or "Loss curves (mean over seeds; a diverged run is drawn up to its divergence)")
    return _save(fig, path)


# --------------------------------------------------------------------------- predicted vs measured
LABEL_MERGE_DEX = 0.02  # predicted-vs-measured points closer than this (log10 units) share a label


def _lr_points(cmp: Comparison) -> list[tuple[int, list[tuple[float, float, bool, bool, str]]]]:
    """Per group (colour index): (measured, predicted, measured at edge, both at an edge, batch-size
    label) points;
    points within LABEL_MERGE_DEX of each other on both log axes share one marker and one label (their
    labels would print on top of each other), and a batch size with one tested LR has no optimum to show."""
    out = []
    for i, g in enumerate(cmp.groups):
        only = {o.batch_size for o in g.measured.optima if o.edge in NO_OPTIMUM_EDGES}
        merged: dict[tuple[float, float, bool], tuple[float, float, list[str]]] = {}
        for r in g.lr_rows:
            if r.predicted is None or r.batch_size in only:
                continue
            key = (
                round(math.log10(r.measured) / LABEL_MERGE_DEX),
                round(math.log10(r.predicted) / LABEL_MERGE_DEX),
                r.measured_at_edge,
                r.measured_at_edge and r.predicted_at_edge,
            )
            merged.setdefault(key, (r.measured, r.predicted, []))[2].append(str(r.batch_size))
        if merged:
            out.append((i, [(m, p, key[2], key[3], ",".join(bs)) for key, (m, p, bs) in merged.items()]))
    return out


def plot_predicted_vs_measured(cmp: Comparison, path: Path, *, title: str = "") -> Path:
    """Left: predicted vs measured LR_opt (band: factor 1.5), left out when no batch size has an LR
    grid. Right: clip frequency per config (band: ±MAE target)."""
    points = _lr_points(cmp)
    fig = Figure(figsize=(11, 5) if points else (6, 5), layout="constrained")
    if points:
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    else:
        ax1, ax2 = None, fig.add_subplot()
    values = []
    any_both = False
    for i, pts in points:
        for measured, predicted, at_edge, both_bounds, label in pts:
            # both only grid-edge bounds: on the diagonal it would read as a perfect prediction
            ax1.plot(
                measured,
                predicted,
                marker="^" if at_edge else "o",
                mfc="none" if at_edge else _color(i),
                mec="0.6" if both_bounds else _color(i),
                ls="none",
                ms=8,
            )
            any_both = any_both or both_bounds
            ax1.annotate(label, (measured, predicted), textcoords="offset points", xytext=(4, 4), fontsize=7)
            values += [measured, predicted]
        g = cmp.groups[i]
        ax1.plot([], [], marker="o", color=_color(i), ls="none", label=group_label(g.gradient_clip, g.optimizer))
    if ax1 is not None:
        lo, hi = min(values) / 2, max(values) * 2
        line = np.geomspace(lo, hi, 10)
        ax1.plot(line, line, color="k", lw=1)
        ax1.fill_between(
            line,
            line / LR_OPT_FACTOR_MAX,
            line * LR_OPT_FACTOR_MAX,
            color="k",
            alpha=0.1,
            lw=0,
            label=f"within ×{LR_OPT_FACTOR_MAX}",
        )
        ax1.set_xlim(lo, hi)
        ax1.set_ylim(lo, hi)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        for axis in (ax1.xaxis, ax1.yaxis):
            axis.set_minor_formatter(ticker.NullFormatter())  # minor labels collide on a short log range
        ax1.set_xlabel("measured LR_opt")
        ax1.set_ylabel("predicted LR_opt")
        ax1.set_title("LR_opt per batch size (labels: B; hollow ▲ = measured at grid edge)", fontsize=9)
        if any_both:
            ax1.plot([], [], marker="^", mfc="none", mec="0.6", ls="none",
                     label="both at a grid edge: bounds, not scored")
        ax1.legend(fontsize=8)
    ax2.plot([0, 1], [0, 1], color="k", lw=1)
    ax2.fill_between(
        [0, 1], [-CLIP_MAE_MAX, 1 - CLIP_MAE_MAX], [CLIP_MAE_MAX, 1 + CLIP_MAE_MAX], color="k", alpha=0.1, lw=0,
    )
    for t in (REGIME_TRANSITION_AT, REGIME_SATURATION_AT):
        ax2.axvline(t, color="c", lw=1, ls="--")
        ax2.axhline(t, color="c", lw=1, ls="--")
    for r in cmp.clip_rows:
        ok = r.measured_regime == r.predicted_regime
        ax2.plot(r.measured, r.predicted, marker="o" if ok else "x", color="C0" if ok else "C3", ls="none", ms=5)
    mae = "—" if cmp.clip_mae is None else f"{cmp.clip_mae:.3f}"
    ax2.set_xlim(-0.03, 1.03)
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel("measured clip frequency")
    ax2.set_ylabel("predicted clip frequency")
    ax2.set_title(f"clip frequency per config (MAE {mae}; × = wrong regime; dashed = regime bounds;\n"
                  f"grey band: within ±{CLIP_MAE_MAX:g}, the MAE target)", fontsize=9)
    fig.suptitle(title or f"{cmp.experiment}: predicted vs measured")
    return _save(fig, path)
