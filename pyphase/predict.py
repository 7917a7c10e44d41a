"""Simulator front end (`pyphase predict`): grids of (clip × batch size × LR × seed), the NQM sweep in
Rust, and what they predict — LR_opt per batch size, β with a bootstrap interval, clip frequency and
regime at LR_opt, the LRs where clipping turns frequent (0.5) and constant (0.99), the effective LR
clipping leaves AdamW with, and the LR_opt that the linear, square-root and noise-scale rules would
give instead.

LR_opt refinement, β fits and their intervals, and the rules come from `pyphase.analysis`, the same
functions that measure real sweeps, so a prediction and a measurement are scored alike.

Output files (in `out`, default `predictions/`): `trajectories.parquet` (one row per simulated
trajectory, exactly `schema.PREDICTION_COLUMNS`), `curves.parquet` (loss at log-spaced steps),
`prediction.json` (the summary) and one `regime_map_clip<c>.png` per clip value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pyphase import __version__, analysis
from pyphase.config import RunConfig, float_problem
from pyphase.errors import PyphaseError, first_line
from pyphase.nqm import NQMParams
from pyphase.results import (
    PREDICT_CURVES_FILE,
    PREDICT_MAP_GLOB,
    PREDICT_SUMMARY_FILE,
    PREDICT_SUMMARY_KIND,
    PREDICT_TABLE_FILE,
    CtrlCGuard,
    PREDICT_TABLE_SHA256,
    _fsync,
    _replace_together,
    check_output_folder,
    json_safe,
    missing_folders,
    remove_empty_folders,
    remove_stale_staged,
    remove_staged,
    staged_paths,
    staged_write_failure,
    to_json,
)
from pyphase.schema import (
    PREDICTION_COLUMNS,
    REGIME_SATURATION_AT,
    REGIME_TRANSITION_AT,
    regime_of,
)

OPTIMIZERS = ("adamw", "sgd")
DEFAULT_BATCHES = (32, 64, 128, 256)
DEFAULT_LR_GRID = "1e-4:1e-1:13"
# Without --lr, the default grid is widened a decade at a time, at most this often, while some
# batch size's LR_opt sits on its edge (an edge minimum bounds LR_opt, it does not locate it),
# then its spacing is halved around the optima this often (a parabola through three points a
# quarter decade apart is biased where the loss is asymmetric in log LR, as the NQM's is).
DEFAULT_EDGE_EXTENSIONS = 3
DEFAULT_ZOOMS = 2
DEFAULT_STEPS = 5000
DEFAULT_SEEDS = 8
DEFAULT_OUT = Path("predictions")
CURVE_POINTS = 20
TRAJECTORIES_FILE = PREDICT_TABLE_FILE  # "trajectories.parquet"; the names live where read_prediction checks them
CURVES_FILE = PREDICT_CURVES_FILE  # "curves.parquet"
SUMMARY_FILE = PREDICT_SUMMARY_FILE  # "prediction.json"
SUMMARY_KIND = PREDICT_SUMMARY_KIND  # "pyphase.prediction"


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class OptimizerSettings:
    """Optimizer and schedule settings of every simulated run. Defaults are the trainer's
    (`pyphase.config.RunConfig`: torch.optim.AdamW's defaults, SGD momentum 0.9, constant LR)."""

    betas: tuple[float, float]
    eps: float
    weight_decay: float
    momentum: float
    warmup_steps: int
    schedule: str

    @classmethod
    def trainer_defaults(cls) -> OptimizerSettings:
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        return cls(**{f.name: defaults[f.name] for f in dataclasses.fields(cls)})

    def core_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def problems(self) -> dict[str, str]:
        """What is wrong with momentum and weight decay, by field ({} when both are fine), in the
        config's words (`config.float_problem`: the bounds `RunConfig` checks)."""
        found = {"momentum": float_problem(self.momentum, lo=0.0, hi_open=1.0),
                 "weight_decay": float_problem(self.weight_decay, lo=0.0)}
        return {k: v for k, v in found.items() if v is not None}


def _is_number(v: Any) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def optimizer_settings(optimizer: str, momentum: float | None = None,
                       weight_decay: float | None = None) -> OptimizerSettings:
    """The trainer's defaults with `--momentum` (sgd only) and `--weight-decay` where given; a bad
    value, or momentum with adamw (which has none), is a one-line PyphaseError naming the option."""
    if momentum is not None and optimizer != "sgd":
        raise PyphaseError(f"--momentum: only sgd has momentum, not --optimizer {optimizer}")
    given = {k: v for k, v in (("momentum", momentum), ("weight_decay", weight_decay)) if v is not None}
    settings = dataclasses.replace(OptimizerSettings.trainer_defaults(), **given)
    bad = next(iter(settings.problems().items()), None)
    if bad:
        raise PyphaseError(f"--{bad[0].replace('_', '-')}: {bad[1]}")
    return settings


# Bounds of the options (a larger value is a one-line error before any work): the simulator's
# MAX_STEPS (rust/sim/sweep.rs), and sizes far beyond any sweep that would only exhaust memory.
MAX_STEPS = 100_000_000
MAX_SEEDS = 10_000
MAX_LRS = 10_000
MAX_BATCH = 10**12
MAX_TRAJECTORIES = 1_000_000  # per prediction (the default grid: 4 B x ~23 LRs x 8 seeds = ~740)


def parse_lr_grid(text: str) -> list[float]:
    """'start:stop:n' (n log-spaced LRs, both ends included) or a comma list 'a,b,c'."""
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise PyphaseError(f"--lr: expected start:stop:count, got {text!r}")
            start, stop, n_text = float(parts[0]), float(parts[1]), parts[2]
            n = int(n_text)
            if not 1 <= n <= MAX_LRS:
                raise PyphaseError(f"--lr: count must be in 1..{MAX_LRS}, got {n}")
            if not (math.isfinite(start) and math.isfinite(stop) and start > 0 and stop > 0):
                raise PyphaseError(f"--lr: start and stop must be positive and finite, got {text!r}")
            if n == 1 and start != stop:
                raise PyphaseError(f"--lr: one LR needs start == stop, got {text!r}")
            if n > 1 and not start < stop:
                raise PyphaseError(f"--lr: start must be below stop, got {text!r}")
            return [float(v) for v in np.geomspace(start, stop, n)]
        lrs = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise PyphaseError(f"--lr: not a number in {text!r}") from None
    if not lrs:
        raise PyphaseError("--lr: no learning rate given")
    if len(lrs) > MAX_LRS:
        raise PyphaseError(f"--lr: at most {MAX_LRS} learning rates, got {len(lrs)}")
    bad = [v for v in lrs if not (math.isfinite(v) and v > 0)]
    if bad:
        raise PyphaseError(f"--lr: learning rates must be positive and finite, got {bad[0]}")
    return lrs


def parse_batches(text: str) -> list[int]:
    """Comma list of positive batch sizes, e.g. '32,64,128,256'."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PyphaseError(f"--batch: not an integer in {text!r}") from None
    if not values:
        raise PyphaseError("--batch: no batch size given")
    bad = [v for v in values if not 1 <= v <= MAX_BATCH]
    if bad:
        raise PyphaseError(f"--batch: batch sizes must be in 1..{MAX_BATCH}, got {bad[0]}")
    return sorted(set(values))


def parse_clips(values: Sequence[str]) -> list[float | None]:
    """Clip thresholds: positive numbers, or 'none'/'off' for clipping off; order kept, duplicates dropped."""
    out: list[float | None] = []
    for v in values:
        s = str(v).strip().lower()
        if s in ("none", "off"):
            c: float | None = None
        else:
            try:
                c = float(s)
            except ValueError:
                raise PyphaseError(f"--clip: expected a positive number or 'none', got {v!r}") from None
            if not (math.isfinite(c) and c > 0):
                raise PyphaseError(f"--clip: the threshold must be positive and finite, got {v!r}")
        if c not in out:
            out.append(c)
    if not out:
        raise PyphaseError("--clip: no clip value given")
    return out


def clip_label(clip: float | None) -> str:
    """'1', '10', 'none': used in file names and tables; %g where that names the value exactly,
    else every digit (1e-07 and 1.00000001e-07 must not share a regime map's file)."""
    if clip is None:
        return "none"
    short = f"{clip:g}"
    return short if float(short) == clip else repr(float(clip))


# --------------------------------------------------------------------------- result
@dataclass
class Prediction:
    """A finished prediction: every trajectory, loss curves, and the summary (JSON-ready dict)."""

    table: pl.DataFrame  # schema.PREDICTION_COLUMNS, one row per trajectory
    curves: pl.DataFrame  # clip, optimizer, batch_size, lr, seed, step, loss
    summary: dict[str, Any]
    params: NQMParams


def predict(
    clips: Sequence[float | None],
    optimizer: str = "adamw",
    batches: Sequence[int] = DEFAULT_BATCHES,
    lrs: Sequence[float] | None = None,
    steps: int = DEFAULT_STEPS,
    seeds: int = DEFAULT_SEEDS,
    params: NQMParams | None = None,
    *,
    settings: OptimizerSettings | None = None,
    precision: str = "f32",
    threads: int | None = None,
    n_boot: int = analysis.DEFAULT_BOOTSTRAP,
    progress: bool = True,
    extend_edges: int = 0,
    zoom: int = 0,
) -> Prediction:
    """Simulate every (clip, B, LR, seed) on the NQM and summarise what it predicts.

    `extend_edges` > 0: while some batch size's LR_opt sits on an edge of the grid, widen the grid
    on that side by one decade at the grid's own log spacing and simulate the new LRs, at most
    `extend_edges` times. `zoom` > 0: then, `zoom` times, add the log-midpoints on both sides of
    every interior grid minimum, halving the spacing where the optima are (the parabola through
    three coarse points is biased where the loss is asymmetric in log LR). `summary["lr_grid_extensions"]`
    lists what was added. The LRs already simulated keep their results exactly (the noise depends
    on the seed only), so the result equals one simulation of the final grid.

    `params` defaults to `NQMParams.default()` (shipped calibration, else the built-in values).
    Seeds share noise draws across configs (common random numbers), so LR and B comparisons within
    a seed are not blurred by independent noise. `precision` "f32" (default) or "f64".
    """
    clips = list(clips)
    if not clips:
        raise PyphaseError("no clip value given")
    if optimizer not in OPTIMIZERS:
        raise PyphaseError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1:
        raise PyphaseError(f"batch sizes must be >= 1, got {batches}")
    lrs = sorted({float(v) for v in (lrs if lrs is not None else parse_lr_grid(DEFAULT_LR_GRID))})
    if not lrs or not all(math.isfinite(v) and v > 0 for v in lrs):
        raise PyphaseError(f"learning rates must be positive and finite, got {lrs}")
    if steps < 1:
        raise PyphaseError(f"steps must be >= 1, got {steps}")
    if seeds < 1:
        raise PyphaseError(f"seeds must be >= 1, got {seeds}")
    if extend_edges < 0 or zoom < 0:
        raise PyphaseError(f"extend_edges and zoom must be >= 0, got {extend_edges}, {zoom}")
    params = params if params is not None else NQMParams.default()
    try:  # a set whose start is degenerate (NQMParams.check) before any simulation, as a file's is
        params.check()
    except ValueError as e:
        raise PyphaseError(f"NQM parameters: {e}") from None
    settings = settings if settings is not None else OptimizerSettings.trainer_defaults()
    bad = next(iter(settings.problems().items()), None)
    if bad:
        raise PyphaseError(f"{bad[0]}: {bad[1]}")

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    frames, curve_frames, rho_frames = [], [], []
    requested = list(lrs)
    extensions: list[dict[str, Any]] = []
    with tqdm(total=len(clips) * len(batches) * len(lrs) * seeds, disable=not progress, file=sys.stderr,
              unit="traj", desc="simulate") as bar:
        new_lrs = lrs
        while True:
            _simulate_grid(clips, optimizer, batches, new_lrs, steps, seeds, params, settings, precision, threads,
                           bar, frames, curve_frames, rho_frames)
            widened = sum(e["kind"] == "widen" for e in extensions)
            zoomed = sum(e["kind"] == "zoom" for e in extensions)
            if widened >= extend_edges and zoomed >= zoom:
                break
            optima = grid_optima(pl.concat(frames))
            kind, new_lrs = "widen", []
            if widened < extend_edges and zoomed == 0:
                new_lrs = edge_extension(optima, lrs)
            if not new_lrs and zoomed < zoom:
                kind, new_lrs = "zoom", zoom_points(optima, lrs)
            if not new_lrs:
                break
            extensions.append({"kind": kind, "added": new_lrs, "low": sum(v < lrs[0] for v in new_lrs),
                               "high": sum(v > lrs[-1] for v in new_lrs)})
            lrs = sorted(lrs + new_lrs)
            bar.total += len(clips) * len(batches) * len(new_lrs) * seeds
            bar.refresh()
    sim_seconds = time.perf_counter() - t0
    table, curves = pl.concat(frames), pl.concat(curve_frames)
    if extensions:  # the rows as one simulation of the final grid would give them
        table = _in_grid_order(table, clips, ["batch_size", "lr", "seed"])
        curves = _in_grid_order(curves, clips, ["batch_size", "lr", "seed", "step"])
    table = table.select(PREDICTION_COLUMNS)
    summary = summarize(table, params, n_boot=n_boot)
    if rho_frames:
        summary["radial"] = radial_summary(pl.concat(rho_frames), params)
    summary.update(
        optimizer=optimizer,
        optimizer_settings=dataclasses.asdict(settings),
        batch_sizes=batches,
        lrs=lrs,
        lr_grid_requested=requested,
        lr_grid_extensions=extensions,
        steps=steps,
        seeds=seeds,
        precision=precision,
        simulate_seconds=round(sim_seconds, 3),
    )
    return Prediction(table=table, curves=curves, summary=json_safe(summary), params=params)


# Chunking of the simulation (see `seed_chunks`): the progress bar moves between Rust calls, so a
# (clip, B) pass over many seeds is split into calls over fewer seeds (Ctrl-C no longer waits for a
# call to end: the binding stops the sweep within moments, rust/bindings/sim.rs). The simulator shares each
# seed's noise draw among all LRs of a call and gives every thread at least two work units, so a
# call over 2·threads seeds or more costs what the whole pass costs; fewer seeds per call, or fewer
# LRs, would redraw the noise (measured: ~13 µs per step per draw against ~9 µs per LR-step, d=4096).
# A call aims at CHUNK_WORK_PER_THREAD LR-steps per thread (about a second); a draw counts as
# NOISE_COST_LRS LR-steps.
CHUNK_WORK_PER_THREAD = 100_000
NOISE_COST_LRS = 1.5


def _sim_threads(threads: int | None) -> int:
    """The simulator's worker count: `threads`, else rayon's default (RAYON_NUM_THREADS, else the
    CPUs this process may use). Only the chunking reads it; results never depend on it."""
    if threads:
        return int(threads)
    try:
        env = int(os.environ.get("RAYON_NUM_THREADS", "0"))
    except ValueError:
        env = 0
    if env > 0:
        return env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def seed_chunks(seeds: int, n_lrs: int, steps: int, threads: int) -> list[range]:
    """Consecutive seed ranges, one Rust call each: as many seeds per call as keep a call near
    CHUNK_WORK_PER_THREAD LR-steps per thread, but never fewer than 2·threads (below that the
    simulator splits the LRs and redraws the noise, a slower simulation), so splitting costs nothing."""
    unit = steps * (n_lrs + NOISE_COST_LRS)  # one seed over every LR
    per_call = max(2 * threads, threads * int(CHUNK_WORK_PER_THREAD // unit))
    n_calls = max(1, seeds // per_call)  # floor: every call keeps at least per_call seeds
    bounds = [round(i * seeds / n_calls) for i in range(n_calls + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def _simulate_grid(clips, optimizer, batches, lrs, steps, seeds, params, settings, precision, threads, bar,
                   frames, curve_frames, rho_frames) -> None:
    """Simulate every (clip, B) over `lrs` and append the trajectory, curve and ρ frames."""
    chunks = seed_chunks(seeds, len(lrs), steps, _sim_threads(threads))
    for clip in clips:
        for b in batches:
            # One pass per (clip, B), in calls over consecutive seeds (`seed_chunks`): the bar
            # moves between calls, and every call draws the same noise per seed (it
            # depends on the seed only), so splitting changes no result.
            parts = []
            for chunk in chunks:
                parts.append(_core_simulate(params, settings, b, lrs, clip, list(chunk), steps, optimizer,
                                            precision, threads))
                bar.update(len(lrs) * len(chunk))
            out = _merge_seed_chunks(parts, chunks)
            frames.append(_trajectory_frame(out, clip, optimizer, b, lrs))
            curve_frames.append(_curve_frame(out, clip, optimizer, b, lrs))
            if params.radial:
                rho_frames.append(pl.DataFrame({
                    "clip": pl.Series([clip] * len(out["config"]), dtype=pl.Float64),
                    "batch_size": pl.Series([b] * len(out["config"]), dtype=pl.Int64),
                    "lr": np.asarray(lrs, dtype=float)[out["config"]],
                    "rho_final": out["rho_final"],
                }))


def _core_simulate(params, settings, b, lrs, clip, seed_list, steps, optimizer, precision, threads) -> dict[str, Any]:
    from pyphase import _core

    return _core.simulate(
        **params.core_kwargs(),
        batch_size=[b] * len(lrs),
        lr=lrs,
        clip=[clip] * len(lrs),
        seeds=seed_list,
        steps=steps,
        optimizer=optimizer,
        **settings.core_kwargs(),
        curve_points=CURVE_POINTS,
        precision=precision,
        threads=threads,
    )


def _merge_seed_chunks(parts: list[dict[str, Any]], chunks: list[range]) -> dict[str, Any]:
    """The outputs of calls over consecutive seed ranges as one call over every seed gives them:
    rows config-major (config · n_seeds + seed index), seed_index counted over all seeds."""
    if len(parts) == 1:
        return parts[0]
    n_seeds = chunks[-1].stop
    seed_index = np.concatenate([np.asarray(p["seed_index"]) + c.start for p, c in zip(parts, chunks)])
    config = np.concatenate([np.asarray(p["config"]) for p in parts])
    order = np.argsort(config * n_seeds + seed_index, kind="stable")
    out: dict[str, Any] = {}
    for key, first in parts[0].items():
        if key == "curve_steps":  # the same log-spaced steps in every call
            out[key] = first
        elif key == "seed_index":
            out[key] = seed_index[order].astype(np.asarray(first).dtype)
        else:
            out[key] = np.concatenate([np.asarray(p[key]) for p in parts])[order]
    return out


def _in_grid_order(df: pl.DataFrame, clips: Sequence[float | None], keys: list[str]) -> pl.DataFrame:
    """Rows in (clip as asked, then `keys`) order, as one simulation of the whole grid gives them."""
    return pl.concat([df.filter(pl.col("clip").is_null() if c is None else pl.col("clip") == c).sort(keys)
                      for c in clips])


def grid_optima(table: pl.DataFrame) -> list[analysis.LrOptimum]:
    """LR_opt of every (clip, B) of a trajectory table on its own LR grid (no fit, no bootstrap)."""
    return [o for _c, _o, g in analysis.groups(analysis.prediction_summaries(table)) for o in analysis.lr_optima(g)]


def zoom_points(optima: Sequence[analysis.LrOptimum], lrs: Sequence[float]) -> list[float]:
    """The log-midpoints between every interior grid minimum in `optima` and its two neighbours on
    the ascending grid `lrs`: the LRs that halve the spacing around the optima."""
    grid = list(lrs)
    added: set[float] = set()
    for o in optima:
        if o.at_edge or not math.isfinite(o.grid_lr):
            continue
        i = grid.index(o.grid_lr)
        for j in (i - 1, i + 1):
            added.add(float(math.sqrt(grid[i] * grid[j])))
    return sorted(added - set(grid))


def edge_extension(optima: Sequence[analysis.LrOptimum], lrs: Sequence[float], decades: float = 1.0) -> list[float]:
    """The LRs that widen the ascending grid `lrs` by `decades` on each side where some LR_opt in
    `optima` sits on that edge, at the grid's own log spacing there (one step of `decades` for a
    single-LR grid). A flat loss curve (edge "flat") points to no side and widens nothing."""
    edges = {o.edge for o in optima}
    added: list[float] = []
    for side, sign, end, inner in (("low", -1, lrs[0], lrs[1:2]), ("high", 1, lrs[-1], lrs[-2:-1])):
        if side in edges or "only" in edges:
            step = abs(math.log10(end / inner[0])) if inner else decades
            added += [float(10 ** (math.log10(end) + sign * step * k))
                      for k in range(1, max(1, round(decades / step)) + 1)]
    return sorted(added)


def _trajectory_frame(out: dict[str, np.ndarray], clip: float | None, optimizer: str, b: int,
                      lrs: Sequence[float]) -> pl.DataFrame:
    n = len(out["config"])
    step = out["diverged_step"]
    return pl.DataFrame(
        {
            "clip": pl.Series([clip] * n, dtype=pl.Float64),
            "optimizer": [optimizer] * n,
            "batch_size": pl.Series([b] * n, dtype=pl.Int64),
            "lr": np.asarray(lrs, dtype=float)[out["config"]],
            "seed": out["seed"].astype(np.int64),
            "final_loss": out["final_loss"],
            "clip_frequency": out["clip_frequency"],
            "grad_norm_before": out["grad_norm_before"],
            "grad_norm_after": out["grad_norm_after"],
            "clip_scale": out["clip_scale"],
            "effective_lr": out["effective_lr"],
            "diverged": out["diverged"],
            "diverged_step": pl.Series([None if s < 0 else int(s) for s in step], dtype=pl.Int64),
        }
    )


def _curve_frame(out: dict[str, np.ndarray], clip: float | None, optimizer: str, b: int,
                 lrs: Sequence[float]) -> pl.DataFrame:
    curve, steps = out["curve"], out["curve_steps"]
    n, k = curve.shape
    return pl.DataFrame(
        {
            "clip": pl.Series([clip] * (n * k), dtype=pl.Float64),
            "optimizer": [optimizer] * (n * k),
            "batch_size": pl.Series([b] * (n * k), dtype=pl.Int64),
            "lr": np.repeat(np.asarray(lrs, dtype=float)[out["config"]], k),
            "seed": np.repeat(out["seed"].astype(np.int64), k),
            "step": np.tile(steps.astype(np.int64), n),
            "loss": curve.reshape(-1),
        }
    )


# --------------------------------------------------------------------------- summary
def regime_boundary(lrs: np.ndarray, clip_frequency: np.ndarray, threshold: float) -> tuple[float | None, str]:
    """Where the (seed-mean) clip frequency crosses `threshold` on the LR grid, interpolated in log10
    LR between the two grid points around the crossing.

    Returns (lr, status): "crossed" (rising: at or above the threshold from lr up to the largest LR;
    the last upward crossing), "crossed falling" (at or above it at the smallest LRs, below it at the
    largest: clipping is frequent below lr, as when small steps keep the gradient from shrinking; the
    first downward crossing), "below grid" (at or above it at every LR: lr None), "not reached"
    (below it at every LR: lr None) or "inside only" (at or above it only between LRs where it is
    below at both ends of the grid: lr None)."""
    above = clip_frequency >= threshold
    if above.all():
        return None, "below grid"
    if not above.any():
        return None, "not reached"
    if above[-1]:
        j = int(np.flatnonzero(~above)[-1])  # last LR below the threshold; j + 1 is at or above it
        status = "crossed"
    elif above[0]:
        j = int(np.flatnonzero(~above)[0]) - 1  # last LR at or above it before the first one below
        status = "crossed falling"
    else:  # reached only inside the grid, below it at both ends: no one boundary
        return None, "inside only"
    x0, x1 = math.log10(lrs[j]), math.log10(lrs[j + 1])
    f0, f1 = float(clip_frequency[j]), float(clip_frequency[j + 1])
    x = x0 + (threshold - f0) / (f1 - f0) * (x1 - x0)
    return float(10**x), status


def _at_lr(lrs: np.ndarray, values: np.ndarray, lr: float) -> float:
    """`values` (per grid LR) linearly interpolated in log10 LR at `lr`."""
    if not math.isfinite(lr):
        return float("nan")
    return float(np.interp(math.log10(lr), np.log10(lrs), values))


def summarize(table: pl.DataFrame, params: NQMParams, *, n_boot: int = analysis.DEFAULT_BOOTSTRAP) -> dict[str, Any]:
    """The prediction summary of a trajectory table (schema.PREDICTION_COLUMNS): per clip value,
    LR_opt per B, β with interval, regimes and boundaries, effective LR, and the rules' LR_opt."""
    desc = params.describe()
    configs = (
        table.group_by(["clip", "optimizer", "batch_size", "lr"])
        .agg(
            pl.col("clip_frequency").mean(),
            pl.col("clip_scale").mean(),
            pl.col("grad_norm_before").mean(),
            pl.col("grad_norm_after").mean(),
            (pl.col("effective_lr") / pl.col("lr")).mean().alias("effective_lr_ratio"),
            pl.col("diverged").mean().alias("diverged_fraction"),
        )
        .sort(["batch_size", "lr"])
    )
    groups_out = []
    for _clip, _opt, group in analysis.groups(analysis.prediction_summaries(table)):
        clip, opt = group["gradient_clip"][0], group["optimizer"][0]
        m = analysis.measure_group(group, n_boot=n_boot)
        mine = configs.filter(
            (pl.col("clip").is_null() if clip is None else pl.col("clip") == clip) & (pl.col("optimizer") == opt)
        )
        per_batch = []
        for o in m.optima:
            rows = mine.filter(pl.col("batch_size") == o.batch_size)
            lrs = rows["lr"].to_numpy()
            freq = rows["clip_frequency"].to_numpy()
            at = {c: _at_lr(lrs, rows[c].to_numpy(), o.lr_opt)
                  for c in ("clip_frequency", "clip_scale", "grad_norm_before", "grad_norm_after",
                            "effective_lr_ratio")}
            b50, s50 = regime_boundary(lrs, freq, REGIME_TRANSITION_AT)
            b99, s99 = regime_boundary(lrs, freq, REGIME_SATURATION_AT)
            per_batch.append(
                {
                    "batch_size": o.batch_size,
                    "lr_opt": o.lr_opt,
                    "lr_opt_grid": o.grid_lr,
                    "edge": o.edge,
                    "refined": o.refined,
                    "note": o.note,
                    "final_loss_at_grid_opt": o.min_loss,
                    "clip_frequency_at_opt": at["clip_frequency"],
                    "regime_at_opt": regime_of(at["clip_frequency"]) if math.isfinite(at["clip_frequency"]) else None,
                    "clip_scale_at_opt": at["clip_scale"],
                    "effective_lr_ratio_at_opt": at["effective_lr_ratio"],
                    "grad_norm_before_at_opt": at["grad_norm_before"],
                    "grad_norm_after_at_opt": at["grad_norm_after"],
                    "lr_transition": b50,
                    "lr_transition_status": s50,
                    "lr_saturation": b99,
                    "lr_saturation_status": s99,
                    "diverged_fraction_max": float(rows["diverged_fraction"].max()),
                }
            )
        groups_out.append(
            {
                "clip": clip,
                "label": clip_label(clip),
                "optimizer": opt,
                # null where β is not predicted (no fit, or a line through grid-edge values only: its
                # slope reflects the grid; beta_note gives it in words), as compare's JSON does
                "beta": m.fit.beta if m.status != "none" else None,
                "beta_ci95": [m.ci_low, m.ci_high] if m.status != "none" and m.ci_low is not None else None,
                "beta_interval_method": m.interval_method,
                "beta_r2": m.fit.r2 if m.status != "none" else None,
                "beta_naive_grid": m.naive.beta if m.naive else None,
                "any_lr_opt_at_edge": m.any_at_edge,
                **beta_status(m),
                "per_batch": per_batch,
                "rules": rules_for(m, desc["b_simple"]),
            }
        )
    return {
        "kind": SUMMARY_KIND,
        "version": 1,
        "pyphase_version": __version__,
        "nqm": params.to_dict(),
        "nqm_source": params.source,
        "init_grad_norm": desc["init_grad_norm"],
        "trace_sigma": desc["trace_sigma"],
        # McCandlish et al.'s B_simple = tr(Σ)/|G|² at θ(0), in closed form for the NQM;
        # `pyphase compare` reads it for the noise-scale rule.
        "b_simple": desc["b_simple"],
        "regime_thresholds": {"transition": REGIME_TRANSITION_AT, "saturation": REGIME_SATURATION_AT},
        "groups": groups_out,
    }


def beta_status(m: analysis.BetaMeasurement) -> dict[str, Any]:
    """Whether a group's β is a prediction ("predicted"), a slope with grid-edge bounds in it
    ("bounded") or no prediction at all ("not_predicted"), with one sentence saying why."""
    if m.fit is None:
        return {"beta_status": "not_predicted", "beta_note": f"β not predicted: {m.not_measured_reason}"}
    # one LR tested or a flat curve: no optimum, left out of the fit (so no bound on β either)
    left_out = "; ".join(f"B = {b} left out of the fit: {why}" for b, why in m.left_out_of_fit.items())
    edges = [o for o in m.fit_optima if o.at_edge]
    by_note: dict[str, list[str]] = {}
    for o in edges:
        by_note.setdefault(o.note, []).append(str(o.batch_size))
    where = "; ".join(f"B = {', '.join(bs)}: {note}" for note, bs in by_note.items())
    widen = " and ".join(
        f"{'below' if side == 'low' else 'above'} {min(lrs) if side == 'low' else max(lrs):.4g}"
        for side in ("low", "high")
        for lrs in [[o.grid_lr for o in edges if o.edge == side]] if lrs)
    hint = f"; widen --lr {widen}" if widen else ""
    if m.all_at_edge:
        return {"beta_status": "not_predicted",
                "beta_note": (f"β not predicted: every batch size's LR_opt in the fit is on a grid edge ({where}); the slope "
                              f"through those grid values, {m.fit.beta:.3f}, reflects the grid, not the loss{hint}"
                              + (f"; {left_out}" if left_out else ""))}
    if edges:
        return {"beta_status": "bounded",
                "beta_note": (f"β only bounded: {len(edges)} of {len(m.fit_optima)} batch sizes in the fit have "
                              f"LR_opt on a grid edge ({where}){hint}" + (f"; {left_out}" if left_out else ""))}
    return {"beta_status": "predicted", "beta_note": left_out or None}


def radial_summary(rho: pl.DataFrame, params: NQMParams) -> dict[str, Any]:
    """The radial part's inputs and, per (clip, B, LR), the seed-mean final ρ = |w_si|/|w_si(0)| and
    the norm of the scale-invariant weights it implies (ρ·si_init_norm). The growth law's keys appear
    only when the set has one (format version 3), so version-2 summaries are unchanged."""
    per = (rho.group_by("clip", "batch_size", "lr").agg(pl.col("rho_final").mean())
           .sort("clip", "batch_size", "lr", nulls_last=True))
    law = ({"si_growth_coef": params.si_growth_coef, "si_growth_power": params.si_growth_power}
           if params.growth_law else {})
    return {
        "si_fraction": params.si_fraction,
        "si_params": params.si_params,
        "si_init_norm": params.si_init_norm,
        **law,
        "rho_final": [{"clip": r["clip"], "batch_size": r["batch_size"], "lr": r["lr"], "rho_final": r["rho_final"],
                       "si_norm_final": r["rho_final"] * params.si_init_norm}
                      for r in per.iter_rows(named=True)],
    }


def rules_for(m: analysis.BetaMeasurement, b_noise: float) -> dict[str, Any]:
    """LR_opt per B under the rules a user would otherwise apply, anchored at the smallest B's
    simulated LR_opt: linear (β = 1), square root (β = 0.5) and McCandlish et al. (2018)
    ε(B) = ε_max / (1 + B_noise/B) with B_noise = the NQM's B_simple; β = the rule's slope over B."""
    usable = [o for o in m.optima if math.isfinite(o.lr_opt)]
    if not usable:
        return {}
    bs = [o.batch_size for o in m.optima]
    anchor = min(usable, key=lambda o: o.batch_size)
    lr_of = {
        "linear": analysis.beta_rule_lr(bs, anchor.batch_size, anchor.lr_opt, 1.0),
        "square_root": analysis.beta_rule_lr(bs, anchor.batch_size, anchor.lr_opt, 0.5),
        "mccandlish": analysis.noise_scale_rule_lr(bs, anchor.batch_size, anchor.lr_opt, b_noise),
    }
    out: dict[str, Any] = {}
    for name, lr in lr_of.items():
        beta = analysis.fit_power_law(bs, [lr[b] for b in bs]).beta if len(bs) >= 2 else None
        out[name] = {"beta": beta, "lr_opt": {str(b): lr[b] for b in bs}, "anchor_batch_size": anchor.batch_size}
    out["mccandlish"]["b_noise"] = b_noise
    return out


# --------------------------------------------------------------------------- outputs
def regime_map_name(clip: float | None) -> str:
    return f"regime_map_clip{clip_label(clip)}.png"


def write_prediction(pred: Prediction, out_dir: str | Path, *, announce: bool = True) -> dict[str, Path]:
    """Write the trajectory and curve tables (Parquet), the summary (JSON) and the regime maps (PNG).

    All or nothing: every file is written under a temporary name in `out_dir`
    (".<name>.tmp.<host>.<pid>", `results.staged_paths`) and synced, and only then are they renamed onto
    their names one right after the other, prediction.json last (`results._replace_together`, as
    `export` does). A failure or Ctrl-C before that leaves an earlier prediction there as it was, and
    removes the temporaries and the folders this call made; a Ctrl-C during the renames waits until
    they are done (`CtrlCGuard`). Temporaries that a write killed midway (SIGKILL, a crash) left in
    `out_dir` are removed first, those of a writer still running excepted (`results.remove_stale_staged`).
    prediction.json records trajectories.parquet's sha256, so `read_prediction` can tell a table it
    does not describe.

    Where `out_dir` already holds a prediction (a pyphase prediction.json), the regime maps that its
    summary listed and this one does not write are removed once the new files are in place (nothing it
    did not list is touched), and, with `announce`, one stderr line says the earlier prediction was
    replaced."""
    out = Path(out_dir)
    from pyphase.data import sha256_file

    names = {"trajectories": TRAJECTORIES_FILE, "curves": CURVES_FILE, "summary": SUMMARY_FILE}
    names |= {f"regime_map_{g['label']}": regime_map_name(g["clip"]) for g in pred.summary["groups"]}
    # final name -> temporary name in `out`, in the order they are renamed: the summary last
    staged = staged_paths(out, [*(n for n in names.values() if n != SUMMARY_FILE), SUMMARY_FILE])
    renamed: list[str] = []
    earlier, had_earlier = None, False
    with CtrlCGuard() as ctrl_c:
        made = missing_folders(out)
        try:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise PyphaseError(f"--out: {out} exists and is not a directory") from None
            except OSError as e:
                raise PyphaseError(f"--out: cannot create {out}: {e.strerror or e}") from None
            # what a write killed midway left, the regime maps of other clip values included
            remove_stale_staged(out, staged, name_glob=PREDICT_MAP_GLOB)
            earlier = earlier_regime_maps(out)
            had_earlier = any((out / name).exists() for name in staged)
            pred.table.write_parquet(staged[TRAJECTORIES_FILE])
            pred.curves.write_parquet(staged[CURVES_FILE])
            for g in pred.summary["groups"]:
                plot_regime_map(pred, g, staged[regime_map_name(g["clip"])], fmt="png")
            summary = dict(pred.summary, files=dict(names),
                           **{PREDICT_TABLE_SHA256: sha256_file(staged[TRAJECTORIES_FILE])})
            staged[SUMMARY_FILE].write_text(to_json(summary) + "\n", encoding="utf-8")
            for tmp in staged.values():
                _fsync(tmp)
            with ctrl_c.held():
                _replace_together(out, staged, renamed)
                removed = _remove_earlier_maps(out, earlier, set(names.values()))
        except (OSError, pl.exceptions.PolarsError) as e:
            kept = staged_write_failure(renamed, had_earlier, "prediction", "run predict again")
            raise PyphaseError(f"--out {out}: cannot write the prediction ({first_line(e)}){kept}") from e
        finally:
            remove_staged(staged)
            if not renamed:
                remove_empty_folders(made)
    pred.summary = summary
    if earlier is not None and announce:
        print(f"note: --out {out} held an earlier prediction; replaced it"
              + (f" and removed its regime maps this one does not write: {', '.join(removed)}" if removed else ""),
              file=sys.stderr)
    return {k: out / n for k, n in names.items()}


def _remove_earlier_maps(out: Path, earlier: set[str] | None, written: set[str]) -> list[str]:
    """Remove the regime maps of the earlier prediction in `out` (`earlier_regime_maps`) that this one
    did not write; the names removed (a map that cannot be removed is one stderr warning)."""
    removed = []
    for name in sorted((earlier or set()) - written):
        try:
            (out / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"warning: --out {out}: cannot remove the earlier prediction's {name}: {e.strerror or e}",
                  file=sys.stderr)
    return removed


def earlier_regime_maps(out: Path) -> set[str] | None:
    """The regime-map files listed by the prediction.json that pyphase wrote in `out` (None when `out`
    holds none: no summary, unreadable, or not a pyphase prediction). Only plain names of the form
    regime_map_clip<c>.png that are files in `out` are returned: nothing else may be removed."""
    try:
        old = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("kind") != SUMMARY_KIND:
        return None
    files = old.get("files")
    names = files.values() if isinstance(files, dict) else []
    return {n for n in names
            if isinstance(n, str) and n == Path(n).name and n.startswith("regime_map_clip") and n.endswith(".png")
            and (out / n).is_file()}


def plot_regime_map(pred: Prediction, group: dict[str, Any], path: Path, *, fmt: str | None = None) -> Path:
    """B × LR heatmap of seed-mean clip frequency for one clip value, with the 0.5 and 0.99
    boundaries per B and LR_opt marked. `fmt` (e.g. "png") where `path`'s suffix does not name the
    format (a temporary name)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors
    from matplotlib.figure import Figure

    clip = group["clip"]
    sel = pred.table.filter(pl.col("clip").is_null() if clip is None else pl.col("clip") == clip)
    grid = (
        sel.group_by(["batch_size", "lr"]).agg(pl.col("clip_frequency").mean()).sort(["batch_size", "lr"])
    )
    bs = sorted(grid["batch_size"].unique().to_list())
    lrs = sorted(grid["lr"].unique().to_list())
    z = grid["clip_frequency"].to_numpy().reshape(len(bs), len(lrs))
    # One equal cell per grid LR (a refined grid's close LRs stay readable); a marker at an LR between
    # two grid LRs sits between their cells, interpolated in log10 LR.
    log_lrs = np.log10(lrs)
    x = np.arange(len(lrs), dtype=float)
    xe = np.arange(len(lrs) + 1) - 0.5
    ye = np.arange(len(bs) + 1) - 0.5

    def at(lr: float) -> float:
        return float(np.interp(math.log10(lr), log_lrs, x)) if len(lrs) > 1 else 0.0

    fig = Figure(figsize=(max(6.0, 0.6 * len(lrs) + 2.5), max(3.5, 0.55 * len(bs) + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    norm = colors.BoundaryNorm([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0], 256)
    im = ax.pcolormesh(xe, ye, z, cmap="magma", norm=norm)
    from pyphase.plots import clip_text

    for (i, j), v in np.ndenumerate(z):
        # in the cell's upper part: the LR_opt and boundary markers sit on its centre line
        ax.text(x[j], i + 0.3, clip_text(v), ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    rows = {r["batch_size"]: r for r in group["per_batch"]}
    for key, style, label in (("lr_transition", "c--", f"clip freq = {REGIME_TRANSITION_AT}"),
                              ("lr_saturation", "c-", f"clip freq = {REGIME_SATURATION_AT}")):
        pts = [(at(rows[b][key]), i) for i, b in enumerate(bs) if rows.get(b, {}).get(key)]
        if pts:
            px, py = zip(*pts)
            ax.plot(px, py, style, marker="|", ms=14, lw=1.5, label=label)
    # LR_opt: a star where it is interior (refined, or the grid value on a flat minimum); a hollow
    # triangle where it is only a bound on a grid edge (▼ at the low edge: LR_opt ≤ it, ▲: ≥ it)
    kinds = (("*", lambda r: not r.get("edge"), "LR_opt"),
             ("v", lambda r: r.get("edge") == "low", "LR_opt ≤ (low grid edge)"),
             ("^", lambda r: r.get("edge") == "high", "LR_opt ≥ (high grid edge)"))  # "only", "flat": none
    for marker, keep, label in kinds:
        opt = [(at(rows[b]["lr_opt"]), i) for i, b in enumerate(bs)
               if rows.get(b, {}).get("lr_opt") is not None and keep(rows[b])]
        if opt:
            ox, oy = zip(*opt)
            ax.plot(ox, oy, marker, mfc="none", mec="lime", mew=1.8, ms=16 if marker == "*" else 11, label=label)
    ax.set_yticks(range(len(bs)), [str(b) for b in bs])
    ax.set_xticks(x, [f"{v:.2g}" for v in lrs], rotation=45, ha="right")
    ax.set_xlabel("learning rate (one cell per grid LR)")
    ax.set_ylabel("batch size")
    beta = group.get("beta")
    ci = group.get("beta_ci95")
    edges = [bool(r.get("edge")) for r in group["per_batch"]]
    # files written before beta_status was recorded: inferred from the rows' grid edges
    status = group.get("beta_status") or ("not_predicted" if edges and all(edges) else "bounded" if any(edges)
                                          else "predicted")
    if beta is None or status == "not_predicted":
        on_edges = status == "not_predicted" and bool(edges) and all(edges)
        beta_txt = "β not predicted" + (" (LR_opt on grid edges)" if on_edges else "")
    else:
        beta_txt = (f"β = {beta:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                    + (" (a bound: some LR_opt on a grid edge)" if status == "bounded" else ""))
    # three short lines: a narrow grid (few LRs) makes a narrow figure, and one long line was cut off
    ax.set_title(f"Predicted clip frequency, {group['optimizer']}, clip = {group['label']}\n{beta_txt}\n"
                 f"NQM: {pred.params.source}", fontsize=10)
    fig.colorbar(im, ax=ax, label="clip frequency (seed mean)")
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format=fmt)
    return path


def _boundary_text(lr: float | None, status: str) -> str:
    """A regime boundary for the table: its LR, after "≤" where the frequency is that high at the LRs
    below it (it falls with LR) rather than above it."""
    if not lr:
        return status
    return ("≤" if status == "crossed falling" else "") + _fmt(lr)


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def _fmt_defined(v: Any) -> str:
    """A closed form of the summary (|G(θ0)|, B_simple), '%.3g'; 'not defined' where the JSON holds
    null (it was infinite or NaN: B_simple = tr(Σ)/|G|² with |G(θ0)| = 0, say)."""
    return format(v, ".3g") if _is_number(v) and math.isfinite(v) else "not defined"


def _widened_words(summary: dict[str, Any]) -> str:
    ext = summary.get("lr_grid_extensions") or []
    if not ext:
        return ""
    req = summary["lr_grid_requested"]
    widen = [e for e in ext if e["kind"] == "widen"]
    zoom = [e for e in ext if e["kind"] == "zoom"]
    words = []
    if widen:
        sides = [side for side in ("low", "high") if any(e[side] for e in widen)]
        words.append(f"widened from {_fmt(min(req))}..{_fmt(max(req))} because LR_opt sat on its "
                     f"{' and '.join(sides)} edge{'s' if len(sides) > 1 else ''}")
    if zoom:
        words.append(f"{sum(len(e['added']) for e in zoom)} LRs added around the optima "
                     f"({len(zoom)} halving{'s' if len(zoom) > 1 else ''} of the spacing)")
    return ", " + "; ".join(words)


def _settings_words(summary: dict[str, Any]) -> str:
    """' (momentum 0.9, weight decay 0.01)': the settings `--momentum` and `--weight-decay` set."""
    s = summary.get("optimizer_settings") or {}
    keys = (("momentum", "momentum"),) if summary.get("optimizer") == "sgd" else ()
    words = [f"{name} {float(s[k])!r}" for k, name in (*keys, ("weight_decay", "weight decay")) if _is_number(s.get(k))]
    return f" ({', '.join(words)})" if words else ""


def format_summary(summary: dict[str, Any]) -> str:
    """The summary for people: one table per clip value, then β and the rules."""
    lines = [
        (f"NQM parameters: {summary['nqm_source']} (d = {summary['nqm']['d']}, h_max = {summary['nqm']['h_max']:g}, "
        f"alpha = {summary['nqm']['alpha']:g}, sigma2 = {summary['nqm']['sigma2']:g}, "
        f"init_power = {summary['nqm']['init_power']:g}"
        + (f", radial: si_fraction = {summary['nqm']['si_fraction']:.3g}, si_params = {summary['nqm']['si_params']:.3g}, "
           f"si_init_norm = {summary['nqm']['si_init_norm']:.3g}" if summary["nqm"].get("si_fraction") is not None else "")
        + (f", |w_si|^2 growth {summary['nqm']['si_growth_coef']:.3g}·lr^{summary['nqm']['si_growth_power']:.3g}/step"
           if summary["nqm"].get("si_growth_coef") is not None else "")
        + f"); |G(θ0)| = {_fmt_defined(summary.get('init_grad_norm'))}, "
          f"B_simple = {_fmt_defined(summary.get('b_simple'))}"),
        (f"{summary.get('optimizer', '?')}{_settings_words(summary)}, {summary.get('steps', '?')} steps, "
        f"{summary.get('seeds', '?')} seeds, "
        f"LR grid {_fmt(min(summary.get('lrs', [math.nan])))}..{_fmt(max(summary.get('lrs', [math.nan])))} "
        f"({len(summary.get('lrs', []))} points)"
        + _widened_words(summary)),
    ]
    head = ["B", "LR_opt", "edge", "loss", "clip freq", "regime", "eff LR/LR", "E[scale]", "|g|",
            "LR@0.5", "LR@0.99"]
    for g in summary["groups"]:
        rows = [[str(r["batch_size"]), _fmt(r["lr_opt"]), r["edge"] or "", _fmt(r["final_loss_at_grid_opt"], ".4f"),
                 _fmt(r["clip_frequency_at_opt"], ".2f"), r["regime_at_opt"] or "-",
                 _fmt(r["effective_lr_ratio_at_opt"], ".3f"), _fmt(r["clip_scale_at_opt"], ".3f"),
                 _fmt(r["grad_norm_before_at_opt"]),
                 _boundary_text(r["lr_transition"], r["lr_transition_status"]),
                 _boundary_text(r["lr_saturation"], r["lr_saturation_status"])]
                for r in g["per_batch"]]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        ci = g["beta_ci95"]
        status = g.get("beta_status", "predicted")
        lines += [
            "",
            f"clip = {g['label']} ({g['optimizer']}): "
            + (f"⚠ {g['beta_note']}" if status == "not_predicted" else
               f"β = {_fmt(g['beta'], '.3f')}" + (f"  95% [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
               + f"  (R² {_fmt(g['beta_r2'], '.2f')}; grid argmin β {_fmt(g['beta_naive_grid'], '.3f')})"
               + (f"\n⚠ {g['beta_note']}" if g.get("beta_note") else "")),  # bounded, or B left out
            "  ".join(h.rjust(w) for h, w in zip(head, widths)),
            *("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows),
        ]
        if any(r[k] == "crossed falling" for r in g["per_batch"] for k in ("lr_transition_status", "lr_saturation_status")):
            lines.append("LR@: clip frequency at or above 0.5 / 0.99 from that LR up; ≤LR: at that LR and below "
                         "(it falls with LR there)")
        if g["rules"]:
            bs = [str(r["batch_size"]) for r in g["per_batch"]]
            lines.append("rules anchored at the smallest B: " + "; ".join(
                f"{name} β={_fmt(rule['beta'], '.2f')}: " + ", ".join(_fmt(rule["lr_opt"][b]) for b in bs)
                for name, rule in g["rules"].items()))
    files = summary.get("files")
    if files:
        lines += ["", "wrote: " + ", ".join(files.values())]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI entry
def run_predict(
    clips: Sequence[str] | None = None,
    optimizer: str = "adamw",
    batch: str = ",".join(str(b) for b in DEFAULT_BATCHES),
    lr: str | None = None,
    steps: int = DEFAULT_STEPS,
    seeds: int = DEFAULT_SEEDS,
    calibration: str | Path | None = None,
    out: str | Path = DEFAULT_OUT,
    progress: bool = True,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> Prediction:
    """`pyphase predict`: parse the option strings, simulate, write every output file to `out`.
    Without `lr`, the default grid, widened while an LR_opt sits on its edge (DEFAULT_EDGE_EXTENSIONS),
    then refined around the optima (DEFAULT_ZOOMS); a grid the user gives is simulated as given.
    `momentum` (sgd only) and `weight_decay` replace the trainer's defaults (`optimizer_settings`)."""
    if optimizer not in OPTIMIZERS:
        raise PyphaseError(f"--optimizer: unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    settings = optimizer_settings(optimizer, momentum, weight_decay)
    if not 1 <= steps <= MAX_STEPS:
        raise PyphaseError(f"--steps: must be in 1..{MAX_STEPS}, got {steps}")
    if not 1 <= seeds <= MAX_SEEDS:
        raise PyphaseError(f"--seeds: must be in 1..{MAX_SEEDS}, got {seeds}")
    if not str(out).strip():
        raise PyphaseError("--out: empty path")
    parsed_clips = parse_clips(clips if clips else ["1.0"])
    batches = parse_batches(batch)
    lrs = parse_lr_grid(lr if lr is not None else DEFAULT_LR_GRID)
    n_traj = len(parsed_clips) * len(batches) * len(lrs) * seeds
    if n_traj > MAX_TRAJECTORIES:
        raise PyphaseError(f"--clip x --batch x --lr x --seeds: {n_traj:,} trajectories, at most {MAX_TRAJECTORIES:,} "
                           "in one prediction")
    params = NQMParams.load(calibration) if calibration is not None else NQMParams.default()
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise PyphaseError(f"--out: {out_path} exists and is not a directory")
    # before simulating (a folder that cannot be made or written in would lose the work), but leaving
    # nothing behind: a folder made to test it is removed at once, and write_prediction makes it again
    made = missing_folders(out_path)
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PyphaseError(f"--out: cannot create {out_path}: {e.strerror or e}") from None
    finally:
        remove_empty_folders(made)
    check_output_folder(out_path, "--out")  # an existing folder this process cannot write in
    pred = predict(parsed_clips, optimizer, batches, lrs, steps, seeds, params, settings=settings, progress=progress,
                   extend_edges=DEFAULT_EDGE_EXTENSIONS if lr is None else 0,
                   zoom=DEFAULT_ZOOMS if lr is None else 0)
    write_prediction(pred, out_path)
    return pred
