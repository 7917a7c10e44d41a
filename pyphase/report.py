"""Markdown reports: a summary across experiments, provenance, the calibration the simulator uses,
per-experiment β fits, training diagnostics read from the step metrics (data budget and
overfitting, clip frequency against LR, divergences, clip thresholds at one (B, LR)),
predicted-vs-measured comparisons with their caveats, plot links, and the answer in words
generated from those numbers. `pyphase compare` prints the comparison section of this module;
`pyphase report` writes whole reports."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from scipy import stats

from pyphase import analysis as an
from pyphase import plots
from pyphase.errors import PyphaseError, first_line
from pyphase.results import (
    CONFIG_FILE,
    RUNS_LAYOUT,
    CorpusEntropies,
    CtrlCGuard,
    PredictionFiles,
    ResultSet,
    _fsync,
    _replace_together,
    check_output_folder,
    collect_steps,
    corpus_entropies,
    describe_source,
    entropies_of_corpus,
    missing_folders,
    read_json_object,
    read_prediction,
    remove_empty_folders,
    remove_stale_staged,
    remove_staged,
    roots_from_options,
    scan,
    staged_paths,
    staged_write_failure,
    to_json,
)
from pyphase.schema import REGIME_SATURATION_AT, REGIMES

REPORT_FILE = "REPORT.md"
PLOTS_DIR = "plots"  # beside the report file
PLOT_GLOB = "*.png"  # the report's plots, for the temporaries a killed report left in PLOTS_DIR

# Thresholds of the generated diagnostics (nats/char unless stated).
# A run overfits when its final val loss is OVERFIT_RISE above the best val loss it reached AND
# OVERFIT_GAP above its final train loss (a rise without that gap is instability, not overfitting).
OVERFIT_RISE = 0.1
OVERFIT_GAP = 0.25
FLAT_WITHIN = 0.02  # LRs whose best-along-training val loss is this close to the best are "equally good"
SPIKE_NORM = 100.0  # a gradient norm this large (before clipping) is a spike worth listing


# --------------------------------------------------------------------------- formatting
def fmt(v: Any) -> str:
    """One cell: 4 significant digits, '—' for missing, 'inf'/'nan' spelled out."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of `rows` (dicts) in `columns` order."""
    def cell(text: str) -> str:  # a literal pipe (|G|², a norm) would end the cell
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(fmt(r.get(c))) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _interval_text(m: an.BetaMeasurement) -> str:
    if m.ci_low is None:
        return "undefined"
    if m.fit is not None and m.all_at_edge:  # no β, so no interval either (a line through grid-edge bounds)
        return "—"
    return f"[{m.ci_low:.2f}, {m.ci_high:.2f}]"


def _label(m: an.BetaMeasurement | an.GroupComparison) -> str:
    return an.group_label(m.gradient_clip, m.optimizer)


# --------------------------------------------------------------------------- tables
# The seed's summary columns under short headers, so the table fits a page (optimizer and step
# count are stated once above the table instead of in every row).
CONFIG_HEADERS: dict[str, str] = {
    "batch_size": "B",
    "lr": "LR",
    "gradient_clip": "clip",
    "final_train_loss": "train",
    "final_val_loss": "val",
    "train_loss_std": "train sd",
    "avg_grad_norm_before": "‖g‖ before",
    "avg_grad_norm_after": "‖g‖ after",
    "avg_clip_frequency": "clip freq",
    "converged": "converged",
    "n_seeds": "seeds",
    "n_nonfinite": "diverged",
    "n_not_converged": "not converged (finite)",
}


def configs_markdown(configs: pl.DataFrame) -> str:
    """Per-config table in the seed's columns (means over seeds) plus seed and divergence counts."""
    rows = [{CONFIG_HEADERS[k]: v for k, v in r.items() if k in CONFIG_HEADERS} for r in configs.to_dicts()]
    optimizers = ", ".join(sorted({str(o) for o in configs["optimizer"].to_list()}))
    steps = ", ".join(str(v) for v in sorted(set(configs["num_steps"].drop_nulls().to_list())))
    head = (
        f"Optimizer {optimizers}; {steps} steps. train/val: final losses (nats/char); train sd: spread of the "
        "train loss over the final window; ‖g‖: mean global gradient norm before/after clipping; converged: "
        "every seed converged; diverged: seeds whose loss or gradient norm went non-finite; not converged "
        "(finite): seeds that ended at a finite loss with converged = false. Both kinds count as infinite "
        "loss when LR_opt is chosen."
    )
    return head + "\n\n" + markdown_table(rows, list(CONFIG_HEADERS.values()))


def beta_markdown(measurements: Sequence[an.BetaMeasurement]) -> str:
    """β fit per group (refined and naive side by side), then LR_opt per batch size."""
    fits = []
    for m in measurements:
        naive = (
            "—"
            if m.naive is None
            else f"{m.naive.beta:.2f} ± {2 * m.naive.beta_stderr:.2f}"
            if math.isfinite(m.naive.beta_stderr)
            else f"{m.naive.beta:.2f}"
        )
        fits.append(
            {
                "group": _label(m),
                "β (refined)": m.fit.beta if m.fit else None,
                "95% interval": _interval_text(m),
                "C": m.fit.c if m.fit else None,
                "R²": m.fit.r2 if m.fit else None,
                "naive β ± 2 s.e.": naive,
                "B at grid edge": ", ".join(str(o.batch_size) for o in m.fit_optima if o.at_edge) or "none",
                "B left out of fit": ", ".join(map(str, m.left_out_of_fit)) or "none",
            }
        )
    optima = [
        {
            "group": _label(m),
            "B": o.batch_size,
            "LR_opt": o.lr_opt,
            "grid argmin": o.grid_lr,
            "loss at argmin": o.min_loss,
            "LRs": o.n_lrs,
            "seeds": o.n_seeds,
            "how": o.note,
        }
        for m in measurements
        for o in m.optima
    ]
    methods = "; ".join(f"{_label(m)}: {m.interval_method}" for m in measurements)
    return (
        markdown_table(fits, list(fits[0]))
        + f"\n\nInterval: {methods}. Naive β: the seed's method (line through the grid argmins)."
        + "\n\n"
        + markdown_table(optima, ["group", "B", "LR_opt", "grid argmin", "loss at argmin", "LRs", "seeds", "how"])
    )


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not scored"}[passed]


def _predicted_bound_rows(cmp: an.Comparison) -> list[an.LrOptRow]:
    """Rows whose predicted LR_opt is a one-sided grid-edge bound against an interior measured LR_opt."""
    return [r for g in cmp.groups for r in g.lr_rows if r.bound_violation is not None]


def _has_clean_lr_rows(cmp: an.Comparison) -> bool:
    """Whether some interior measured LR_opt is compared with a clean (non-bound) predicted value."""
    return any(r.ratio is not None and not r.predicted_at_edge and not r.measured_at_edge
               for g in cmp.groups for r in g.lr_rows)


def _predicted_edge_text(r: an.LrOptRow) -> str:
    if r.predicted_edge in an.BOUND_EDGES:
        return f"{r.predicted_edge} (LR_opt {an.BOUND_EDGES[r.predicted_edge]})"
    return "yes" if r.predicted_at_edge else "no"


def target_caveat(cmp: an.Comparison, target: an.Target) -> str:
    """Why a target is not scored (its reason; for an edge-only target also whether the grid had one
    LR per batch size), or, for a scored β target, which measured LR_opt values in its fit are
    grid-edge bounds (the LR_opt and rules targets leave those out and say so in their value), or, for a
    scored LR_opt target, at which B it was judged against a predicted grid-edge bound."""
    optima = [o for g in cmp.groups for o in g.measured.optima if math.isfinite(o.lr_opt)]
    edges = [o for o in optima if o.at_edge]
    if target.passed is None:
        if target.reason == an.EDGE_REASON and edges and all(o.edge == "only" for o in edges):
            return f"{an.EDGE_REASON}: one LR per batch size, so no measured optimum"
        return target.reason or ""
    if target.name == "lr_opt":  # scored: name the predicted grid-edge bounds it was judged against
        bounds = _predicted_bound_rows(cmp)
        if not bounds:
            return ""
        bs = ", ".join(sorted({str(r.batch_size) for r in bounds}, key=int))
        return f"{'partly ' if _has_clean_lr_rows(cmp) else ''}predicted bounds: predicted LR_opt on a grid edge at B={bs}"
    if target.name != "beta":  # lr_opt / rules values already name the edge B they left out
        return ""
    edges = [o for g in cmp.groups if an.beta_scored(g) for o in g.measured.fit_optima if o.at_edge]
    if not edges:  # only the groups the β target scored: another group's edges bound nothing in it
        return ""
    bs = ", ".join(sorted({str(o.batch_size) for o in edges}, key=int))
    return f"partly bounds: measured LR_opt on a grid edge at B={bs}"


def comparison_markdown(cmp: an.Comparison) -> str:
    """Targets, β, LR_opt per B, rules, and clip-frequency/regime scores as Markdown, after the warnings
    where the prediction simulated other steps or optimizer settings than the runs trained."""
    parts = [f"Prediction: {cmp.prediction_source or 'none given (rules scored on the measurement only)'}"]
    parts += [f"⚠ {w}" for w in cmp.warnings]  # steps or optimizer settings the runs did not use
    parts.append(
        markdown_table(
            [t.to_dict() | {"result": _verdict(t.passed), "caveat": target_caveat(cmp, t) or "—"} for t in cmp.targets],
            ["name", "criterion", "value", "result", "caveat"],
        )
    )
    if cmp.b_noise is not None:
        parts.append(f"Noise-scale rule: B_noise = {cmp.b_noise:.4g}, from {cmp.b_noise_source}.")
    betas = [
        {
            "group": _label(g),
            # a line through grid-edge bounds or single LRs measures nothing: not a number here
            "measured β": (g.measured.fit.beta if g.measured.fit and not g.measured.all_at_edge
                           else "not measured"),
            "measured 95%": _interval_text(g.measured),
            # a line through predicted grid-edge bounds only predicts nothing either
            "predicted β": (g.predicted.fit.beta if g.predicted and g.predicted.fit and not g.predicted.all_at_edge
                            else "not predicted" if g.predicted else None),
            "predicted 95%": _interval_text(g.predicted) if g.predicted else "—",
        }
        for g in cmp.groups
    ]
    parts.append(markdown_table(betas, list(betas[0])))
    lr_rows = [
        r.to_dict() | {"group": _label(g), "measured at edge": r.measured_at_edge,
                       "predicted at edge": _predicted_edge_text(r)}
        for g in cmp.groups
        for r in g.lr_rows
    ]
    parts.append(
        markdown_table(
            lr_rows, ["group", "batch_size", "measured", "measured at edge", "predicted", "predicted at edge",
                      "predicted_from", "ratio"]
        )
    )
    rules = [
        {"group": _label(g), "rule": r.name, "β over measured B": r.beta, "log10 LR_opt RMSE": r.log10_rmse}
        for g in cmp.groups
        for r in g.rules
    ] + [
        {
            "group": _label(g),
            "rule": "pyphase prediction",
            "β over measured B": g.predicted.fit.beta if g.predicted and g.predicted.fit else None,
            "log10 LR_opt RMSE": g.prediction_log10_rmse,
        }
        for g in cmp.groups
        if g.prediction_log10_rmse is not None
    ]
    parts.append(
        "Rules anchored at the smallest measured batch size's LR_opt; "
        "error = RMS of log10(rule/measured) over every measured B."
    )
    parts.append(markdown_table(rules, ["group", "rule", "β over measured B", "log10 LR_opt RMSE"]))
    parts.append(_clip_markdown(cmp))
    return "\n\n".join(parts)


def _clip_markdown(cmp: an.Comparison) -> str:
    if not cmp.clip_rows:
        return "Clip frequency: no clipped config matched a predicted (B, LR, clip)."
    head = f"Clip frequency over {len(cmp.clip_rows)} clipped configs matched by (B, LR, clip): MAE {cmp.clip_mae:.3f}"
    head += f"; {cmp.unmatched_configs} measured configs had no prediction." if cmp.unmatched_configs else "."
    confusion = [{"measured \\ predicted": m} | cmp.regime_confusion[m] for m in REGIMES]
    worst = sorted(cmp.clip_rows, key=lambda r: -abs(r.predicted - r.measured))[:5]
    worst_rows = [r.to_dict() | {"error": r.predicted - r.measured} for r in worst]
    return "\n\n".join(
        [
            head,
            f"Regime confusion (accuracy {cmp.regime_accuracy:.0%}):",
            markdown_table(confusion, ["measured \\ predicted", *REGIMES]),
            "Largest clip-frequency errors:",
            markdown_table(
                worst_rows,
                [
                    "gradient_clip",
                    "batch_size",
                    "lr",
                    "measured",
                    "predicted",
                    "error",
                    "measured_regime",
                    "predicted_regime",
                ],
            ),
        ]
    )


# --------------------------------------------------------------------------- the answer in words
def _beta_meaning(m: an.BetaMeasurement) -> str:
    if m.ci_low is None or m.ci_high is None or not (math.isfinite(m.ci_low) and math.isfinite(m.ci_high)):
        return ""
    refs = {"no batch dependence (β=0)": 0.0, "the square-root rule (β=0.5)": 0.5, "the linear rule (β=1)": 1.0}
    inside = [n for n, v in refs.items() if m.ci_low <= v <= m.ci_high]
    outside = [n for n, v in refs.items() if not m.ci_low <= v <= m.ci_high]
    text = (
        f" The interval is consistent with {_and(inside)}"
        if inside
        else " The interval excludes every textbook value (0, 0.5, 1)"
    )
    return text + (f" and excludes {_and(outside)}." if inside and outside else ".")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def beta_words(m: an.BetaMeasurement) -> str:
    """β with its interval and what it means, or why it is not measured, plus edge warnings."""
    group = _label(m)
    if m.fit is None:
        return f"**{group}**: β is not measured: {m.not_measured_reason}."
    edges = [o for o in m.fit_optima if o.at_edge]
    edge_notes = "; ".join(f"B={o.batch_size}: {o.note}" for o in edges)
    left = "; ".join(f"B={b}: {why}" for b, why in m.left_out_of_fit.items())
    left_text = f" Left out of the fit: {left}." if left else ""
    if m.all_at_edge:
        return (
            f"**{group}**: ⚠ β is not measured: every batch size's minimum in the fit is on a grid edge "
            f"({edge_notes}). A line through those grid values has slope {m.fit.beta:.2f}, which reflects the "
            "chosen grid, not the loss." + left_text
        )
    if edges:
        text = (
            f"**{group}**: ⚠ β is only bounded: {len(edges)} of the {m.fit.n} batch sizes in the fit have their "
            f"minimum on a grid edge. A line through the {m.fit.n} LR_opt values has slope {m.fit.beta:.2f}"
        )
    else:
        text = f"**{group}**: LR_opt ∝ B^{m.fit.beta:.2f}"
    if m.ci_low is not None:
        text += f" (95% interval {m.ci_low:.2f} to {m.ci_high:.2f}, {m.interval_method}; "
        text += f"R² {fmt(m.fit.r2)}; {m.fit.n} batch sizes)."
    else:
        text += f" ({m.interval_method}; no interval is given rather than an invented one)."
    if not edges:  # with bounds in the fit, "consistent with" or "excludes" would overstate it
        text += _beta_meaning(m)
    if m.naive is not None:
        text += f" The seed's grid-argmin method gives β = {m.naive.beta:.2f} on the same runs."
    coarse = [o for o in m.optima if not o.at_edge and not o.refined and math.isfinite(o.lr_opt)]
    if coarse:
        text += " Not refined (grid resolution only): " + "; ".join(f"B={o.batch_size}: {o.note}" for o in coarse)
        text += "."
    if edges:
        text += f" ⚠ {edge_notes}. β is a bound, not a measurement, until the grid is extended past those edges."
    return text + left_text


def clipping_words(check: an.ClipNormCheck, configs: pl.DataFrame) -> str:
    """Whether clipping is saturated (at each B's best LR and overall), with the after-clip norm check."""
    if check.clipped_runs == 0:
        return "Clipping was off in every run."
    n = sum(check.regimes.values())
    reg = check.regimes
    text = (
        f"Of {n} clipped configs, {reg['saturation']} are saturated (clip frequency ≥ {REGIME_SATURATION_AT}), "
        f"{reg['transition']} in transition and {reg['pre-saturation']} pre-saturation."
    )
    best = _best_per_batch(configs.filter(pl.col("gradient_clip").is_not_null()))
    if best:
        text += (
            " At each batch size's best grid LR the clip frequency is "
            + ", ".join(
                f"{fmt(r['avg_clip_frequency'])} "
                f"(B={r['batch_size']}, {an.group_label(r['gradient_clip'], r['optimizer'])})"
                for r in best
            )
            + "."
        )
    if check.ok:
        text += (
            " After-clip norms are consistent: the mean after-clip norm is at or below the threshold in all "
            f"{check.clipped_runs} clipped runs (max after/threshold {fmt(check.max_after_over_threshold)}) "
            "and below the before-clip norm wherever clipping fired."
        )
    else:
        text += (
            f" ⚠ After-clip norms look mismeasured: {check.after_above_threshold} runs report a mean after-clip "
            f"norm above the threshold, {check.after_equals_before} report after = before although clipping "
            f"fired (seed 000's error) and {check.after_above_before} report after above before, which clipping "
            "cannot produce; the saturation verdict rests on clip frequency only."
        )
    return text


def _best_per_batch(configs: pl.DataFrame) -> list[dict[str, Any]]:
    finite = configs.filter(pl.col("loss").is_finite())
    if finite.height == 0:
        return []
    keys = ["gradient_clip", "optimizer", "batch_size"]
    return finite.sort("loss").group_by(keys, maintain_order=True).first().sort(keys, nulls_last=False).to_dicts()


def plateau_words(configs: pl.DataFrame, entropies: CorpusEntropies | None) -> str:
    """Whether the best loss is below the corpus's unigram (and bigram) entropy."""
    finite = configs.filter(pl.col("loss").is_finite())
    if finite.height == 0:
        return "Every config diverged: no loss to compare with the corpus entropies."
    best = finite.sort("loss").row(0, named=True)
    where = f"B={best['batch_size']}, LR={fmt(best['lr'])}, {an.group_label(best['gradient_clip'], best['optimizer'])}"
    text = f"The best mean final validation loss is {best['loss']:.3f} nats/char ({where})."
    if entropies is None:
        return (
            text + " The corpus entropies are not recorded (summary columns corpus_unigram_entropy/"
            "corpus_bigram_entropy or provenance.json corpus_entropies), so whether the models left the "
            "unigram plateau cannot be said."
        )
    uni, bi = entropies.unigram, entropies.bigram
    n, below_uni, below_bi = finite.height, int((finite["loss"] < uni).sum()), int((finite["loss"] < bi).sum())
    counts = f" ({below_uni} of {n} finite configs below the unigram entropy, {below_bi} below the bigram)"
    if best["loss"] >= uni:
        verdict = (
            f"at or above the unigram entropy {uni:.3f}: even the best model learned no more than letter "
            "frequencies (still on the unigram plateau)"
        )
    elif best["loss"] >= bi:
        verdict = (
            f"{uni - best['loss']:.3f} below the unigram entropy {uni:.3f} but above the bigram entropy "
            f"{bi:.3f}: the best model left the unigram plateau without reaching bigram statistics"
        )
    else:
        verdict = (
            f"below both the unigram ({uni:.3f}) and bigram ({bi:.3f}) entropies: the best model left the "
            "unigram plateau and uses more than one character of context"
        )
    return text + f" That is {verdict}{counts}; entropies from {entropies.source}."


def divergence_words(summaries: pl.DataFrame) -> str:
    """How many runs count as infinite loss in the LR_opt fits (`an.diverged_expr`), told apart: those
    that really diverged (`an.nonfinite_expr`) and those that ended at a finite loss with
    converged = false."""
    df = an.with_effective_loss(summaries).with_columns(an.nonfinite_expr().alias("_nonfinite"))
    n_div = int((df["diverged"] & df["_nonfinite"]).sum())
    n_nc = int((df["diverged"] & ~df["_nonfinite"]).sum())
    n = summaries.height
    why = "a non-finite loss or gradient norm at a recorded step, or a non-finite final val loss"
    nc = "ended at a finite loss with converged = false"
    if not n_div and not n_nc:
        if n == 1:
            return "The run neither diverged nor ended with converged = false."
        return f"None of the {n} runs diverged or ended with converged = false."
    if not n_nc:
        return f"{n_div} of {n} runs diverged ({why}) and count as infinite loss in the LR_opt fits."
    if not n_div:
        return (
            f"No run diverged ({why}); {n_nc} of {n} runs {nc} and count as infinite loss in the LR_opt fits."
        )
    total = n_div + n_nc
    return (
        f"{n_div} of {n} runs diverged ({why}) and {n_nc} more {nc}; "
        f"{'both' if total == 2 else f'all {total}'} count as infinite loss in the LR_opt fits."
    )


def prediction_words(cmp: an.Comparison, label: str = "The prediction") -> str:
    """The prediction's scores in a sentence or two, and its setting warnings (`an.setting_warnings`)
    after them, so that a summary never reads as a like-for-like test when it is not one."""
    return _scores_words(cmp, label) + "".join(f" ⚠ {w}" for w in cmp.warnings)


def _scores_words(cmp: an.Comparison, label: str) -> str:
    scored = [t for t in cmp.targets if t.passed is not None]
    if not scored:
        reasons = sorted({t.reason for t in cmp.targets if t.reason})
        return f"{label}: no target could be scored" + (f" ({'; '.join(reasons)})." if reasons else ".")
    passed = [t.name for t in scored if t.passed]
    failed = [t.name for t in scored if not t.passed]
    text = f"{label} passes {len(passed)} of {len(scored)} scored targets" + (
        f" (fails: {', '.join(failed)})." if failed else "."
    )
    edge = [t.name for t in cmp.targets if t.passed is None and t.reason == an.EDGE_REASON]
    if edge:
        text += f" Not scored ({an.EDGE_REASON}: the measured LR_opt is only a bound): {', '.join(edge)}."
    predicted_edge = [t.name for t in cmp.targets if t.passed is None and t.reason == an.PREDICTED_EDGE_REASON]
    if predicted_edge:
        text += (f" Not scored ({an.PREDICTED_EDGE_REASON}: the predicted LR_opt is only a bound): "
                 f"{', '.join(predicted_edge)}.")
    lr = next((t for t in scored if t.name == "lr_opt"), None)
    bounds = _predicted_bound_rows(cmp) if lr is not None else []
    violated = sorted({r.batch_size for r in bounds if r.bound_violation > an.LR_OPT_FACTOR_MAX})
    on = "partly on" if bounds and _has_clean_lr_rows(cmp) else "on"
    if violated:
        text += (f" lr_opt is judged {on} predicted grid-edge bounds: the measured LR_opt lies beyond the "
                 f"predicted bound by more than factor {an.LR_OPT_FACTOR_MAX} at B={', '.join(map(str, violated))}.")
    elif bounds:
        text += (f" lr_opt is judged {on} predicted grid-edge bounds, which the measured LR_opt keeps "
                 f"within factor {an.LR_OPT_FACTOR_MAX}.")
    return text


# --------------------------------------------------------------------------- diagnostics from step metrics
def run_diagnostics(summaries: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """One row per run (summary columns plus): best val loss along training and its step, last val,
    mean and sd of the val evaluations in the second half of training, final weight norm, and the
    largest finite gradient norm before clipping. A diverged run counts only up to its divergence
    (the trainer freezes it afterwards)."""
    limit = pl.col("diverged_step").fill_null(pl.col("num_steps"))
    df = steps.join(summaries.select("run_id", "num_steps", "diverged_step"), on="run_id", how="inner")
    df = df.filter(pl.col("step") <= limit)
    ev = df.filter(pl.col("val_loss").is_finite().fill_null(False))
    val = ev.sort("step").group_by("run_id").agg(
        pl.col("val_loss").min().alias("best_val"),
        pl.col("step").sort_by("val_loss").first().alias("best_val_step"),
        pl.col("val_loss").last().alias("last_val"),
        pl.col("val_loss").filter(pl.col("step") > pl.col("num_steps") / 2).mean().alias("late_val_mean"),
        pl.col("val_loss").filter(pl.col("step") > pl.col("num_steps") / 2).std().alias("late_val_sd"),
    )
    weights = (
        df.filter(pl.col("weight_norm").is_not_null())
        .sort("step")
        .group_by("run_id")
        .agg(pl.col("weight_norm").last().alias("final_weight_norm"))
    )
    norms = (
        df.filter(pl.col("grad_norm_before").is_finite().fill_null(False))
        .group_by("run_id")
        .agg(pl.col("grad_norm_before").max().alias("max_grad_norm"))
    )
    out = an.with_effective_loss(summaries)
    for part in (val, weights, norms):
        out = out.join(part, on="run_id", how="left")
    return out


def _mean_by_config(runs: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    return runs.group_by(an.CONFIG_KEYS).agg([pl.col(c).mean() for c in columns]).sort(an.CONFIG_KEYS, nulls_last=False)


def data_budget(provenance: Mapping[str, Any], summaries: pl.DataFrame) -> dict[int, float] | None:
    """Epochs of the train split per batch size (steps x B x block / train characters), when the
    provenance records the train split size and the block size; else None."""
    train = (provenance.get("corpus") or {}).get("train_chars")
    model = ((provenance.get("run_config") or {}).get("common") or {}).get("model") or {}
    block = model.get("block_size")
    if not train or not block:
        return None
    per_b = summaries.group_by("batch_size").agg(pl.col("num_steps").max()).sort("batch_size")
    return {int(r["batch_size"]): r["num_steps"] * r["batch_size"] * block / train for r in per_b.to_dicts()}


def overfitting_markdown(
    runs: pl.DataFrame, epochs: Mapping[int, float] | None, *, has_lr_grid: bool = True
) -> tuple[str, str]:
    """Per (group, B): epochs, the best final val loss and the best val loss along training with
    their LRs, and how many LRs overfit; and a sentence saying what that does to LR_opt."""
    cfg = _mean_by_config(
        runs.filter(~pl.col("diverged")), ["final_val_loss", "final_train_loss", "best_val", "best_val_step"]
    )
    if cfg.height == 0 or cfg["best_val"].is_null().all():
        return "", ""
    overfit = ((pl.col("final_val_loss") - pl.col("best_val")) > OVERFIT_RISE) & (
        (pl.col("final_val_loss") - pl.col("final_train_loss")) > OVERFIT_GAP
    )
    cfg = cfg.with_columns((pl.col("final_val_loss") - pl.col("best_val")).alias("rise"), overfit.alias("overfit"))
    rows = []
    for (clip, opt, b), g in cfg.group_by(["gradient_clip", "optimizer", "batch_size"], maintain_order=True):
        # a config with no evaluation along training (no step rows: a committed table without them)
        # has no best val loss; sorted first, its nulls were taken as the best
        g = g.filter(pl.col("best_val").is_not_null() & pl.col("final_val_loss").is_not_null())
        if g.height == 0:
            continue
        fin = g.sort("final_val_loss").row(0, named=True)
        best = g.sort("best_val").row(0, named=True)
        flat = g.filter(pl.col("best_val") <= best["best_val"] + FLAT_WITHIN)["lr"].to_list()
        rows.append(
            {
                "group": an.group_label(clip, opt),
                "B": b,
                "epochs": epochs.get(int(b)) if epochs else None,
                "best final val (LR)": f"{fmt(fin['final_val_loss'])} ({fmt(fin['lr'])})",
                "train there": fin["final_train_loss"],
                "best val in training (LR, mean step)": f"{fmt(best['best_val'])} ({fmt(best['lr'])}, "
                f"{int(best['best_val_step'])})",
                f"LRs within {FLAT_WITHIN} of it": ", ".join(fmt(v) for v in sorted(flat)),
                "LRs overfit": f"{g.filter(pl.col('overfit')).height} of {g.height}",
            }
        )
    if not rows:
        return "", ""
    rows.sort(key=lambda r: (r["group"], r["B"]))
    table = markdown_table(rows, list(rows[0]))
    over = cfg.filter(pl.col("overfit"))
    text = (
        f"Overfitting: {over.height} of {cfg.height} finite configs end with a val loss more than {OVERFIT_RISE} nats "
        f"above the best val loss the same run reached during training and more than {OVERFIT_GAP} above their "
        "final train loss"
    )
    if over.height:
        worst = over.sort("rise", descending=True).row(0, named=True)
        text += (
            f" (largest: B={worst['batch_size']}, LR={fmt(worst['lr'])}: final train {worst['final_train_loss']:.3f}, "
            f"best val {worst['best_val']:.3f} at step {int(worst['best_val_step'])}, final val "
            f"{worst['final_val_loss']:.3f})"
        )
    text += "."
    if epochs:
        text += " The runs see " + ", ".join(f"{e:,.0f} (B={b})" for b, e in sorted(epochs.items()))
        text += " epochs of the train split."
    if has_lr_grid and over.height and over.height * 4 >= cfg.height:  # a quarter or more of the grid overfits
        text += (
            " LR_opt taken from the final val loss is then set partly by when each run starts to overfit "
            "within the step budget, not only by optimisation speed (a data-limited regime); the best val "
            "loss along training is the early-stopping view of the same runs."
        )
    return table, text


def early_stopping_words(runs: pl.DataFrame, n_boot: int) -> list[str]:
    """β with LR_opt taken from each run's best val loss along training instead of its final one."""
    if runs["best_val"].is_null().all():
        return []
    alt = runs.with_columns(
        pl.when(pl.col("diverged")).then(pl.col("final_val_loss")).otherwise(pl.col("best_val")).alias("final_val_loss")
    ).select([c for c in runs.columns if c not in ("loss", "diverged")])
    words = []
    flat_note = _flatness(alt)
    for m in an.measure_beta(alt, n_boot=n_boot):
        w = "Early stopping (best val loss along training, at the evaluation steps), " + beta_words(m)
        words.append(w + flat_note.get((m.gradient_clip, m.optimizer), ""))
    return words


def _lr_opt_text(o: an.LrOptimum) -> str:
    if o.edge == "flat":
        return f"{o.batch_size}: flat"
    bound = {"low": "≤", "high": "≥"}.get(o.edge or "", "")
    return f"{o.batch_size}: {bound}{fmt(o.lr_opt)}"


def _budget_text(b: an.BudgetBeta) -> str:
    m = b.measurement
    interval = f"[{m.ci_low:.2f}, {m.ci_high:.2f}]" if m.ci_low is not None and m.ci_high is not None else "(no interval)"
    return f"{m.fit.beta:.2f} {interval} at step {b.step:,} (lowest val {b.best_loss:.3f})"


def beta_along_markdown(along: Sequence[an.BudgetBeta]) -> tuple[str, list[str]]:
    """Table of β at each evaluation step taken as the budget, and one sentence per group."""
    if not along:
        return "", []
    rows, words = [], []
    for b in along:
        m = b.measurement
        edges = [o.batch_size for o in m.optima if o.at_edge]
        rows.append(
            {
                "step": b.step,
                "group": _label(m),
                "β": m.fit.beta if m.fit and not m.all_at_edge else None,  # all-edge: no β
                "95% interval": f"[{m.ci_low:.2f}, {m.ci_high:.2f}]" if m.ci_low is not None else "—",
                "B on a grid edge": ", ".join(map(str, edges)) or "none",
                "LR_opt by B": "; ".join(_lr_opt_text(o) for o in m.optima),
                "lowest val loss": b.best_loss,
            }
        )
    for label in dict.fromkeys(r["group"] for r in rows):
        mine = [b for b in along if _label(b.measurement) == label]
        measured = [b for b in mine if b.measurement.fit is not None and not b.measurement.any_at_edge]
        text = (
            f"β along training, {label} (the val loss at each of {len(mine)} evaluation steps taken as the budget): "
            f"measured (every minimum inside the grid) at {len(measured)} of {len(mine)} steps"
        )
        if measured:
            first, last = measured[0], measured[-1]
            low = min(measured, key=lambda b: b.measurement.fit.beta)
            high = max(measured, key=lambda b: b.measurement.fit.beta)
            text += f"; {_budget_text(first)}"
            for extra in dict.fromkeys([high, low]):
                if extra not in (first, last):
                    text += f"; {'highest' if extra is high else 'lowest'} {_budget_text(extra)}"
            if last is not first:
                text += f"; {_budget_text(last)}"
            with_ci = [b for b in measured if b.measurement.ci_low is not None and b.measurement.ci_high is not None]
            zero = [b.step for b in with_ci if b.measurement.ci_low <= 0 <= b.measurement.ci_high]
            if len(with_ci) == len(measured):
                text += f". The interval contains β = 0 at {len(zero)} of those {len(measured)} steps"
            elif with_ci:
                text += f". The interval contains β = 0 at {len(zero)} of the {len(with_ci)} of those steps that have one"
            else:
                text += ". None of those steps has an interval"
        words.append(text + ".")
    return markdown_table(rows, list(rows[0])), words


def _flatness(runs: pl.DataFrame) -> dict[tuple[float | None, str | None], str]:
    """A warning per group when, at every batch size, 3+ LRs come within FLAT_WITHIN of the best loss
    (the minimum over LR is then too flat for its position to mean much)."""
    cfg = _mean_by_config(an.with_effective_loss(runs).filter(~pl.col("diverged")), ["final_val_loss"])
    out = {}
    for clip, opt, g in an.groups(cfg):
        counts = [
            part.filter(pl.col("final_val_loss") <= part["final_val_loss"].min() + FLAT_WITHIN).height
            for _, part in g.group_by(["batch_size"])
        ]
        if counts and min(counts) >= 3:
            out[(clip, opt)] = (
                f" ⚠ At every batch size {min(counts)} or more LRs reach within {FLAT_WITHIN} nats of the best, so "
                "this LR_opt is weakly determined."
            )
    return out


def _range_text(values: pl.Series) -> str:
    """'min–max' of the non-null values, one value when they agree, '—' when there are none."""
    v = values.drop_nulls()
    if len(v) == 0:
        return "—"
    lo, hi = fmt(v.min()), fmt(v.max())
    return lo if lo == hi else f"{lo}–{hi}"


def _spearman_sign(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 3 or len(set(y)) < 2:
        return None
    return float(stats.spearmanr(x, y).statistic)


def clip_vs_lr(runs: pl.DataFrame) -> tuple[str, str]:
    """Per LR of each clipped group (ranges over batch sizes): clip frequency, mean ‖g‖ before
    clipping and final weight norm; and which way clip frequency moves with LR."""
    # diverged runs left out: their mean norm is dominated by the blow-up before the non-finite step
    clipped = runs.filter(pl.col("gradient_clip").is_not_null() & ~pl.col("diverged"))
    cfg = _mean_by_config(clipped, ["avg_clip_frequency", "avg_grad_norm_before", "final_weight_norm"])
    tables, sentences = [], []
    for clip, opt, g in an.groups(cfg):
        if g["lr"].n_unique() < 3:
            continue
        rows = []
        # ascending LR (first-appearance order puts an LR that only some batch sizes have last)
        for (lr,), part in g.sort("lr").group_by(["lr"], maintain_order=True):
            row = {"group": an.group_label(clip, opt), "LR": lr}
            for col, name in [
                ("avg_clip_frequency", "clip freq"),
                ("avg_grad_norm_before", "‖g‖ before"),
                ("final_weight_norm", "weight norm"),
            ]:
                row[name] = _range_text(part[col])
            rows.append(row)
        tables.append(markdown_table(rows, list(rows[0])))
        rhos = {}
        for (b,), part in g.sort("lr").group_by(["batch_size"], maintain_order=True):
            rho = _spearman_sign(part["lr"].to_list(), part["avg_clip_frequency"].to_list())
            if rho is not None:
                rhos[int(b)] = rho
        if rhos:
            falling, rising = sum(r < 0 for r in rhos.values()), sum(r > 0 for r in rhos.values())
            lo_lr, hi_lr = g["lr"].min(), g["lr"].max()
            at_lo = _range_text(g.filter(pl.col("lr") == lo_lr)["avg_clip_frequency"])
            at_hi = _range_text(g.filter(pl.col("lr") == hi_lr)["avg_clip_frequency"])
            sentences.append(
                f"{an.group_label(clip, opt)}: clip frequency falls with LR at {falling} and rises with LR at "
                f"{rising} of {len(rhos)} batch sizes (Spearman ρ per B: "
                f"{', '.join(f'{r:+.2f}' for _, r in sorted(rhos.items()))}); "
                f"{at_lo} at LR={fmt(lo_lr)} vs {at_hi} at LR={fmt(hi_lr)}."
            )
    head = (
        "Per LR, ranges over batch sizes (seed means of the runs that stayed finite): clip frequency, mean ‖g‖ "
        "before clipping, final weight norm."
    )
    return (head + "\n\n" + "\n\n".join(tables) if tables else ""), " ".join(sentences)


def divergence_markdown(runs: pl.DataFrame) -> tuple[str, str]:
    """The runs that count as infinite loss: those that diverged (`an.nonfinite_expr`), with their
    divergence step and largest finite gradient norm, then those that ended at a finite loss with
    converged = false; and spikes (‖g‖ ≥ SPIKE_NORM) in runs that stayed finite."""
    cols = ["gradient_clip", "batch_size", "lr", "seed"]
    nonfinite = an.nonfinite_expr()
    div = runs.filter(pl.col("diverged") & nonfinite).sort(cols, nulls_last=False)
    not_conv = runs.filter(pl.col("diverged") & ~nonfinite).sort(cols, nulls_last=False)
    spikes = runs.filter(~nonfinite & (pl.col("max_grad_norm") >= SPIKE_NORM)).sort(cols, nulls_last=False)
    rows = [
        {
            "clip": r["gradient_clip"],
            "B": r["batch_size"],
            "LR": r["lr"],
            "seed": r["seed"],
            # steps.parquet's numbering: the first step whose loss or gradient norm was not finite
            "diverged at step": None if r["diverged_step"] is None else r["diverged_step"] + 1,
            "largest finite ‖g‖": r["max_grad_norm"],
            "clip freq": r["avg_clip_frequency"],
            "final val": r["final_val_loss"],
            "outcome": outcome,
        }
        for part, outcome in ((div, "diverged"), (not_conv, "not converged (finite)"))
        for r in part.iter_rows(named=True)
    ]
    text = ""
    if div.height:  # counted by `divergence_words`, which comes first: only what it does not say
        text = (
            f"Before the first non-finite step the diverged runs' gradient norm reached "
            f"{fmt(div['max_grad_norm'].min())} to {fmt(div['max_grad_norm'].max())}."
        )
    if not_conv.height:
        text += (
            f" The runs that ended at a finite loss with converged = false have final val losses "
            f"{fmt(not_conv['final_val_loss'].min())} to {fmt(not_conv['final_val_loss'].max())}."
        )
    if spikes.height:
        text += (
            f" {spikes.height} runs that stayed finite had gradient-norm spikes ≥ {SPIKE_NORM:g}: "
            + ", ".join(
                f"B={r['batch_size']}, LR={fmt(r['lr'])}, clip={_clip_text(r['gradient_clip'])}, seed {r['seed']} "
                f"(max {fmt(r['max_grad_norm'])})"
                for r in spikes.iter_rows(named=True)
            )
            + "."
        )
    return (markdown_table(rows, list(rows[0])) if rows else ""), text.strip()


def _clip_text(clip: float | None) -> str:
    return "off" if clip is None else f"{clip:g}"


def _lost_runs_text(r: Mapping[str, Any]) -> str:
    """A config's runs that count as infinite loss, told apart: `n_nonfinite` of them diverged, the
    rest of its `n_diverged` ended at a finite loss with converged = false (of `n_runs`)."""
    n_div, n_nc, n = r["n_nonfinite"], r["n_diverged"] - r["n_nonfinite"], r["n_runs"]
    nc = "ended at a finite loss with converged = false"
    if n_div and n_nc:
        return f"{n_div} of {n} runs diverged and {n_nc} more {nc}"
    return f"{n_div} of {n} runs diverged" if n_div else f"{n_nc} of {n} runs {nc}"


def _difference_yardstick(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, str, float | None] | None:
    """The standard error of the difference of two configs' mean final val losses, where it comes
    from in words, and Welch's t-test p-value when both configs have several seeds (None when
    neither seeds nor late evaluations give a standard error).

    Each config contributes a variance for its mean: with n ≥ 2 seeds the seed-to-seed spread of its
    final val loss, s²/n (Welch's standard error of a difference of two means); with one seed there
    is no seed spread, and the only resolution available is the scatter of that run's own val
    evaluations in the second half of training, sd² (for two single runs, √(sd_a² + sd_b²)). That
    within-run scatter leaves out seed-to-seed variation (initialisation, data order), so a
    difference judged by it alone is resolved against evaluation noise, not against another seed."""
    var = 0.0
    for r in (a, b):
        if r["n_runs"] >= 2 and r["val_seed_sd"] is not None and math.isfinite(r["val_seed_sd"]):
            var += r["val_seed_sd"] ** 2 / r["n_runs"]
        elif r["n_runs"] == 1 and r["late_val_sd"] is not None and math.isfinite(r["late_val_sd"]):
            var += r["late_val_sd"] ** 2
        else:
            return None
    se = math.sqrt(var)
    if a["n_runs"] >= 2 and b["n_runs"] >= 2:
        # With few seeds "two standard errors" is far too lenient (Welch's degrees of freedom can be
        # near 1): the verdict is the test's, at the 5% level.
        p = None
        if se > 0:
            p = float(stats.ttest_ind_from_stats(
                a["final_val_loss"], a["val_seed_sd"], a["n_runs"],
                b["final_val_loss"], b["val_seed_sd"], b["n_runs"], equal_var=False,
            ).pvalue)
        return se, (
            f"se {se:.2g} from the seed-to-seed spread of final val loss over {a['n_runs']} and {b['n_runs']} seeds"
        ), p
    if a["n_runs"] == 1 and b["n_runs"] == 1:
        return se, (
            f"two of the combined late-evaluation scatter of the two runs (sd {se:.2g} = √(sd₁² + sd₂²) of the "
            "val evaluations in each run's second half; one seed each, so no seed-to-seed spread is in it)"
        ), None
    multi, single = (a, b) if a["n_runs"] >= 2 else (b, a)
    return se, (
        f"two standard errors of the difference (se {se:.2g}, from the seed-to-seed spread over the "
        f"{multi['n_runs']} seeds of clip={_clip_text(multi['gradient_clip'])} and, for the single "
        f"clip={_clip_text(single['gradient_clip'])} run, the scatter of its val evaluations in its second "
        "half, which leaves out that config's seed-to-seed spread)"
    ), None


def threshold_markdown(runs: pl.DataFrame) -> tuple[str, list[str]]:
    """Where several clip thresholds share one (optimizer, B, LR): their clip frequency, norms and
    losses side by side (means over seeds), and whether the best and worst finite config differ:
    by Welch's t-test at the 5% level where both have several seeds, else by more than two standard
    errors of the difference (see `_difference_yardstick`). A config with a diverged seed, or one that
    ended at a finite loss with converged = false, has an infinite effective loss and is left out of
    that comparison (the mean of its surviving seeds would be a survivor's mean)."""
    means = [
        "avg_clip_frequency",
        "avg_grad_norm_before",
        "avg_grad_norm_after",
        "final_val_loss",
        "late_val_mean",
        "late_val_sd",
        "n_div",
    ]
    cfg = (
        runs.with_columns(pl.col("diverged").cast(pl.Float64).alias("n_div"))
        .group_by(an.CONFIG_KEYS)
        .agg(
            [pl.col(c).mean() for c in means]
            + [
                pl.len().alias("n_runs"),  # one run per seed (an.check_summaries rejects duplicates)
                pl.col("diverged").sum().alias("n_diverged"),
                (pl.col("diverged") & an.nonfinite_expr()).sum().alias("n_nonfinite"),
                pl.col("final_val_loss").std().alias("val_seed_sd"),  # seed-to-seed, ddof=1; null for one seed
            ]
        )
        .sort(an.CONFIG_KEYS, nulls_last=False)
    )
    several_optimizers = runs["optimizer"].n_unique() > 1
    rows, words = [], []
    for (opt, b, lr), g in cfg.group_by(["optimizer", "batch_size", "lr"], maintain_order=True):
        if g["gradient_clip"].n_unique() + g["gradient_clip"].null_count() < 2 or g.height < 2:
            continue
        g = g.sort("gradient_clip", nulls_last=False)
        for r in g.iter_rows(named=True):
            rows.append(
                {
                    "B": b,
                    "LR": lr,
                    "clip": "off" if r["gradient_clip"] is None else r["gradient_clip"],
                    "clip freq": r["avg_clip_frequency"],
                    "‖g‖ before": r["avg_grad_norm_before"],
                    "‖g‖ after": r["avg_grad_norm_after"],
                    "final val": r["final_val_loss"],
                    "late val mean ± sd": f"{fmt(r['late_val_mean'])} ± {fmt(r['late_val_sd'])}",
                    "diverged": r["n_nonfinite"] > 0,
                    "not converged (finite)": r["n_diverged"] > r["n_nonfinite"],
                }
            )
        finite = g.filter(pl.col("n_div") == 0)
        if finite.height < 2:
            continue
        ranked = finite.sort("final_val_loss")
        best, worst = ranked.row(0, named=True), ranked.row(-1, named=True)
        where = f"{opt}, " if several_optimizers else ""
        text = (
            f"{where}B={b}, LR={fmt(lr)}: final val loss ranges from {best['final_val_loss']:.3f} "
            f"(clip={_clip_text(best['gradient_clip'])}, clipping {best['avg_clip_frequency']:.0%} of steps) to "
            f"{worst['final_val_loss']:.3f} (clip={_clip_text(worst['gradient_clip'])})"
        )
        off = g.filter(pl.col("gradient_clip").is_null())
        if off.height:
            o = off.row(0, named=True)
            if o["n_diverged"]:
                text += f"; with clipping off {_lost_runs_text(o)}"
            else:
                runs_text = {1: "the run", 2: "both runs"}.get(o["n_runs"], f"all {o['n_runs']} runs")
                text += f"; with clipping off {runs_text} stayed finite (final val {o['final_val_loss']:.3f})"
        dropped = g.filter(pl.col("n_div") > 0)
        dropped = dropped.filter(pl.col("gradient_clip").is_not_null())  # clip=off's divergence is stated above
        if dropped.height:
            only_div = (dropped["n_diverged"] == dropped["n_nonfinite"]).all()
            none_div = (dropped["n_nonfinite"] == 0).all()
            which = "diverged" if only_div else "not-converged" if none_div else "diverged or not-converged"
            text += f"; left out of the comparison for {which} seeds: " + ", ".join(
                f"clip={_clip_text(r['gradient_clip'])} ({_lost_runs_text(r)})"
                for r in dropped.iter_rows(named=True)
            )
        spread = abs(worst["final_val_loss"] - best["final_val_loss"])
        yardstick = _difference_yardstick(best, worst)
        if yardstick is None:
            text += (
                f" ({best['n_runs']} and {worst['n_runs']} seeds; no seed spread or late val evaluations "
                "to judge the difference by)"
            )
        else:
            se, source, p = yardstick
            if best["n_runs"] >= 2 and worst["n_runs"] >= 2:
                if p is None:  # no seed spread at all (equal seeds): any difference stands out
                    verdict = "larger than its standard error of 0" if spread > 0 else "zero"
                    text += f". A difference of {spread:.3f} ({source}) is {verdict}"
                else:
                    # best against worst of k configs is the largest of k(k-1)/2 pairwise differences:
                    # Bonferroni over those pairs keeps the 5% level (unadjusted, 5 equal configs read
                    # "significant" ~16% of the time)
                    pairs = finite.height * (finite.height - 1) // 2
                    p_adj = min(1.0, p * pairs)
                    verdict = "significant" if p_adj < 0.05 else "not significant"
                    adjusted = (f", {p_adj:.2g} after Bonferroni over the {pairs} pairs of {finite.height} thresholds"
                                if pairs > 1 else "")
                    text += (f". A difference of {spread:.3f} ({source}) is {verdict} at the 5% level (Welch's t-test "
                             f"p = {p:.2g}{adjusted})")
            else:
                verdict = "larger than" if spread > 2 * se else "within"
                text += f". A difference of {spread:.3f} is {verdict} {source}"
        words.append(text + ".")
    if not rows:
        return "", []
    note = (
        "final val and late val: means over seeds of each run's final val loss and of the mean ± sd of its "
        "evaluations in the second half of training (the sd is the scatter one run's final evaluation has, "
        "not the spread between seeds)."
    )
    return note + "\n\n" + markdown_table(rows, list(rows[0])), words


# --------------------------------------------------------------------------- provenance and calibration
def provenance_markdown(rs: ResultSet, experiments: Sequence[str]) -> str:
    """Device, torch, commit, seeds, steps, commands and notes of each experiment, and the corpus."""
    rows, bullets, corpora = [], [], {}
    for e in experiments:
        summ = rs.summaries.filter(pl.col("experiment") == e).collect()
        prov = rs.provenance(e)
        seeds = sorted(set(summ["seed"].drop_nulls().to_list()))
        rows.append(
            {
                "experiment": e,
                "runs (seeds)": f"{summ.height} ({', '.join(str(x) for x in seeds) or '—'})",
                "steps": ", ".join(str(v) for v in sorted(set(summ["num_steps"].drop_nulls().to_list()))),
                "device": "; ".join(sorted({str(v) for v in summ["device"].to_list()})),
                "torch": "; ".join(sorted({str(v) for v in summ["torch_version"].to_list()})),
                "commit": "; ".join(sorted({str(v)[:12] for v in summ["git_commit"].to_list()})),
            }
        )
        src = rs.source(e)
        line = f"**{e}**: read from `{src.path}` ({src.layout} layout)"
        if prov.get("exported_utc"):
            line += f", exported {prov['exported_utc']}"
        commands = prov.get("command") or []
        if isinstance(commands, str):
            commands = [commands]
        if commands:
            line += "; command: " + "; ".join(f"`{c}`" for c in commands)
        notes = prov.get("notes") or []
        if isinstance(notes, str):
            notes = [notes]
        if notes:
            line += ". Notes: " + "; ".join(n.rstrip(".") for n in notes) + "."
        bullets.append(line)
        corpus = prov.get("corpus") or {}
        for name, sha in zip(summ["corpus"].to_list(), summ["corpus_sha256"].to_list(), strict=True):
            corpora.setdefault((name, sha), corpus if corpus.get("sha256") == sha else {})
    parts = [markdown_table(rows, list(rows[0])), "\n".join(f"- {b}" for b in bullets)]
    for (name, sha), facts in corpora.items():
        text = f"Corpus: `{name}`, sha256 `{sha}`"
        if facts.get("train_chars"):
            text += f"; train split {facts['train_chars']:,} characters, validation {facts.get('valid_chars', 0):,}"
        parts.append(text + ".")
    return "\n\n".join(parts)


def read_calibration(path: Path) -> dict[str, Any]:
    """A calibration JSON file (`pyphase calibrate` output) as a dict; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PyphaseError(f"--calibration {path}: no such file")
    return read_json_object(path)


def noise_scale(b_noise: float | None, calibration: Path | None) -> tuple[float | None, str | None]:
    """B_noise for the noise-scale rule and where it came from: `b_noise` (explicit) wins, else the
    MEASURED B_simple of `calibration` at its fit_step, else (None, None) and `analysis.compare`
    falls back to the prediction JSON."""
    if b_noise is not None:
        return b_noise, "--b-noise (given explicitly)"
    if calibration is None:
        return None, None
    shown = _display_path(calibration)
    value, step = an.b_simple_at_fit_step(read_calibration(calibration), shown)
    return value, f"the measured B_simple at step {step} (fit_step) of the calibration `{shown}`"


def _calibration_of(path: Path | None, corpus_sha: set[str]) -> tuple[dict[str, Any], Path] | None:
    from pyphase.nqm import DEFAULT_CALIBRATION

    chosen = Path(path) if path is not None else DEFAULT_CALIBRATION
    if path is None and not chosen.is_file():
        return None
    cal = read_calibration(chosen)
    prov = cal.get("provenance") if isinstance(cal, dict) else None
    meas = (prov or {}).get("measurements")
    if not isinstance(meas, dict) or not isinstance(meas.get("points"), list):
        return None  # built-in parameters: nothing measured to report
    if path is None and ((prov.get("data") or {}).get("sha256") not in corpus_sha):
        return None  # the shipped calibration was measured on another corpus
    return cal, chosen


def _display_path(path: Path) -> str:
    """A path relative to the working directory when it lies inside it (reports stay machine-neutral)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def calibration_markdown(cal: Mapping[str, Any], path: Path) -> str:
    """What the calibration measured along its short AdamW run, and where a single quadratic
    cannot follow: |G|², noise, curvature per point, and AdamW's step length per unit LR."""
    prov = cal["provenance"]
    meas = prov["measurements"]
    rows = []
    for pt in meas["points"]:
        noise = pt.get("noise") or {}
        eig = pt.get("eigenvalues") or [None]
        rows.append(
            {
                "step": pt.get("step"),
                "loss": pt.get("loss"),
                "|G|²": noise.get("grad_norm2"),
                "tr Σ": noise.get("trace_sigma"),
                "B_simple": noise.get("b_simple"),
                "λ_max": eig[0],
                "tr H": pt.get("hessian_trace"),
            }
        )
    source = (
        f"From `{_display_path(path)}` ({prov.get('label') or prov.get('description', '')}; {prov.get('device', '?')}, "
        f"torch {prov.get('torch', '?')}, {fmt(prov.get('wall_s'))} s). Measured only on the calibration's own "
        "short AdamW run, never on a sweep's outcome."
    )
    text = [source, markdown_table(rows, list(rows[0]))]
    first, last = rows[0], rows[-1]
    if first["|G|²"] and last["|G|²"] and first["λ_max"] and last["λ_max"]:
        text.append(
            f"From step {first['step']} to step {last['step']}: |G|² falls {first['|G|²'] / last['|G|²']:.0f}x, "
            f"λ_max changes {last['λ_max'] / first['λ_max']:.2f}x, tr H {last['tr H'] / first['tr H']:.2f}x and "
            f"B_simple {last['B_simple'] / first['B_simple']:.0f}x. In one fixed quadratic the Hessian does not change "
            "along training; the NQM takes its curvature and noise from one point (step "
            f"{meas.get('fit_step')}) and its initial loss and |G|² from step 0."
        )
    step = (meas.get("consistency") or {}).get("adamw_step_per_lr_measured")
    d = cal.get("d")
    if step and d:
        text.append(
            f"AdamW step length per unit LR (update RMS × √#params, at step {meas.get('fit_step')}): measured "
            f"{step:.0f} on the real model; the NQM's is at most √d = {math.sqrt(d):.0f} (d = {d}), so at equal LR "
            f"the simulated AdamW moves at most {math.sqrt(d) / step:.2f} as far per step."
        )
    return "\n\n".join(text)


# --------------------------------------------------------------------------- whole report
BEFORE_SWEEP_LABEL = "prediction"


@dataclass(frozen=True)
class ExperimentReport:
    """What one experiment's section was built from (kept for tests and callers)."""

    experiment: str
    markdown: str
    plots: tuple[Path, ...]
    measurements: tuple[an.BetaMeasurement, ...]
    comparison: an.Comparison | None
    comparisons: tuple[tuple[str, an.Comparison], ...] = ()  # (label, comparison) per prediction set
    summary_rows: tuple[dict[str, Any], ...] = ()


def run_configs(rs: ResultSet, experiment: str, summaries: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Each run's config by run_id, for compare's setting warnings: its config.json where the runs are
    in run folders, else the settings provenance.json records as common to every run (`run_config`);
    a run with neither (older results) or an unreadable file records nothing."""
    src = rs.source(experiment)
    try:
        recorded = rs.provenance(experiment).get("run_config")
    except PyphaseError:
        recorded = None
    common = recorded.get("common") if isinstance(recorded, dict) else None
    common = common if isinstance(common, dict) else {}
    out = {}
    for run_id in summaries["run_id"].drop_nulls().unique().to_list():
        config = None
        path = src.path / run_id / CONFIG_FILE
        if src.layout == RUNS_LAYOUT and path.is_file():
            try:
                config = read_json_object(path)
            except (OSError, PyphaseError):
                config = None
        out[run_id] = config if config is not None else common
    return out


def prediction_for(path: Path | None, experiment: str) -> PredictionFiles | None:
    """The prediction of one experiment: `path/<experiment>/` when that folder exists, else `path`."""
    if path is None:
        return None
    own = Path(path) / experiment
    return read_prediction(own if own.is_dir() else path)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def _only_one_lr(measurements: Sequence[an.BetaMeasurement]) -> bool:
    return all(o.edge == "only" for m in measurements for o in m.optima)


def _make_plots(
    steps: pl.DataFrame,
    experiment: str,
    summaries: pl.DataFrame,
    configs: pl.DataFrame,
    measurements: Sequence[an.BetaMeasurement],
    comparisons: Sequence[tuple[str, an.Comparison]],
    plot_dir: Path,
    entropies: CorpusEntropies | None,
    along: Sequence[an.BudgetBeta] = (),
) -> list[tuple[str, Path]]:
    primary = comparisons[0][1] if comparisons else None
    out = []
    # with one LR per batch size, or every LR diverged, there is no LR_opt to draw
    if not _only_one_lr(measurements) and any(math.isfinite(o.lr_opt) for m in measurements for o in m.optima):
        out.append(
            (
                "LR_opt vs batch size",
                plots.plot_lr_opt(
                    measurements,
                    plot_dir / f"{experiment}_lr_opt.png",
                    predicted=[g.predicted for g in primary.groups] if primary else (),
                    predicted_label=comparisons[0][0] if comparisons else "predicted",
                    title=f"{experiment}: LR_opt vs batch size",
                ),
            )
        )
    if any(b.measurement.fit is not None and not b.measurement.any_at_edge for b in along):
        out.append(
            (
                "β along training",
                plots.plot_beta_along(
                    along, plot_dir / f"{experiment}_beta_along_training.png",
                    title=f"{experiment}: β with the val loss at each evaluation step as the budget",
                ),
            )
        )
    out.append(("Final validation loss", plots.plot_loss_heatmap(configs, plot_dir / f"{experiment}_loss_heatmap.png")))
    if configs["gradient_clip"].is_not_null().any():
        out.append(
            (
                "Clip frequency and regimes",
                plots.plot_clip_heatmap(configs, plot_dir / f"{experiment}_clip_heatmap.png"),
            )
        )
    if steps.height:
        out.append(
            (
                "Loss curves",
                plots.plot_loss_curves(
                    steps,
                    summaries,
                    plot_dir / f"{experiment}_loss_curves.png",
                    entropies=entropies,
                    title=f"{experiment}: loss curves (mean over seeds; diverged runs up to their divergence)",
                ),
            )
        )
    for i, (label, cmp) in enumerate(comparisons):
        if cmp.prediction_source is None:
            continue
        suffix = "" if i == 0 else f"_{_slug(label)}"
        out.append(
            (
                f"Predicted ({label}) vs measured",
                plots.plot_predicted_vs_measured(
                    cmp,
                    plot_dir / f"{experiment}_predicted_vs_measured{suffix}.png",
                    title=f"{experiment}: {label} vs measured",
                ),
            )
        )
    return out


def _not_measured_reason(m: an.BetaMeasurement) -> str:
    if _only_one_lr([m]):
        return "one LR per B"
    if m.optima and all(o.edge == "flat" for o in m.optima):
        return "flat loss over LR at every B"
    if all(o.edge is None and not math.isfinite(o.lr_opt) for o in m.optima):  # a flat curve has no LR_opt either
        return "every LR diverged or did not converge"
    if m.fit is None:
        return "fewer than two B locate an LR_opt"
    return "every LR_opt on a grid edge"


def summary_rows(experiment: str, measurements: Sequence[an.BetaMeasurement], configs: pl.DataFrame) -> list[dict]:
    """One row per clip/optimizer group for the report's summary table."""
    rows = []
    for m in measurements:
        g = configs.filter(
            pl.col("gradient_clip").eq_missing(m.gradient_clip) & pl.col("optimizer").eq_missing(m.optimizer)
        )
        finite = g.filter(pl.col("loss").is_finite()).sort("loss")
        best = finite.row(0, named=True) if finite.height else None
        freq = g["avg_clip_frequency"].drop_nulls()
        edges = [o for o in m.fit_optima if o.at_edge]
        n_nc = int(g["n_not_converged"].sum())  # finite runs with converged = false, not counted as diverged
        if m.fit is None or _only_one_lr([m]) or m.all_at_edge:
            beta = f"not measured ({_not_measured_reason(m)})"
        else:
            beta = f"{m.fit.beta:.2f} {_interval_text(m)}" + (f", bounded: {len(edges)} of {m.fit.n} B on an edge" if edges else "")
            if m.left_out_of_fit:
                beta += f"; B={', '.join(map(str, m.left_out_of_fit))} not in the fit"
        rows.append(
            {
                "experiment": experiment,
                "group": _label(m),
                "β [95% interval]": beta,
                "best val loss (B, LR)": f"{best['loss']:.3f} ({best['batch_size']}, {fmt(best['lr'])})" if best else "—",
                "clip freq": "clipping off" if m.gradient_clip is None else f"{fmt(freq.min())}–{fmt(freq.max())}",
                "diverged runs": f"{int(g['n_nonfinite'].sum())} of {int(g['n_seeds'].sum())}"
                + (f" (+{n_nc} not converged, finite)" if n_nc else ""),
            }
        )
    return rows


def experiment_report(
    rs: ResultSet,
    experiment: str,
    *,
    out_dir: Path,
    prediction: PredictionFiles | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
    extra_predictions: Sequence[tuple[str, PredictionFiles]] = (),
    b_noise_source: str | None = None,
    prediction_label: str = BEFORE_SWEEP_LABEL,
    drawn_in: Path | None = None,
) -> ExperimentReport:
    """One experiment's Markdown section; its plots are linked relatively as `out_dir/plots/<name>`
    (the paths in `ExperimentReport.plots`). They are drawn there, or into the folder `drawn_in` when
    given (under the same names), from where the caller moves them into place: `write_report` does,
    once the whole report is ready.

    Corpus entropies come from `corpus` when given (checked against the runs' corpus_sha256), else
    from what the results recorded (see `pyphase.results.corpus_entropies`). `extra_predictions`
    are further (label, prediction) sets scored the same way as `prediction`."""
    summaries = rs.summaries.filter(pl.col("experiment") == experiment).collect()
    configs = an.config_table(summaries)
    sets = [(prediction_label, prediction), *extra_predictions] if prediction is not None else list(extra_predictions)
    configs_of_runs = run_configs(rs, experiment, summaries) if sets else None
    comparisons = [
        (
            label,
            an.compare(
                summaries,
                experiment=experiment,
                prediction=pred.trajectories,
                prediction_meta=pred.meta,
                prediction_source=pred.source,
                b_noise=b_noise,
                b_noise_source=b_noise_source,
                n_boot=n_boot,
                run_configs=configs_of_runs,
            ),
        )
        for label, pred in sets
    ]
    if not comparisons:
        comparisons = [
            (
                "no prediction",
                an.compare(summaries, experiment=experiment, b_noise=b_noise, b_noise_source=b_noise_source, n_boot=n_boot),
            )
        ]
    cmp = comparisons[0][1]
    measurements = [g.measured for g in cmp.groups]  # compare measured every group: one bootstrap, not two
    entropies = entropies_of_corpus(corpus, rs, experiment) if corpus is not None else corpus_entropies(rs, experiment)
    try:
        steps = rs.steps.filter(pl.col("experiment") == experiment).collect()
    except pl.exceptions.PolarsError:
        steps = collect_steps(rs).filter(pl.col("experiment") == experiment)  # names a damaged file
    runs = run_diagnostics(summaries, steps) if steps.height else None
    along = an.beta_along_training(summaries, steps, n_boot=n_boot) if runs is not None and not _only_one_lr(measurements) else []
    plot_dir = out_dir / PLOTS_DIR
    figures = [
        (name, plot_dir / p.name)
        for name, p in _make_plots(steps, experiment, summaries, configs, measurements, comparisons,
                                   drawn_in if drawn_in is not None else plot_dir, entropies, along)
    ]

    words = [beta_words(m) for m in measurements]
    if _only_one_lr(measurements):
        words = ["One LR per batch size: no LR_opt and no β can be measured from this experiment."]
    clip_check = an.check_clip_norms(summaries)
    words.append(clipping_words(clip_check, configs))
    sections: list[str] = []
    table_bt = ""
    if runs is not None:
        table_lr, clip_lr_text = clip_vs_lr(runs)
        if clip_lr_text:
            words.append(clip_lr_text)
    words.append(plateau_words(configs, entropies))
    if runs is not None:
        table_of, text_of = overfitting_markdown(
            runs, data_budget(rs.provenance(experiment), summaries), has_lr_grid=not _only_one_lr(measurements)
        )
        if text_of:
            words.append(text_of)
        if not _only_one_lr(measurements):
            words += early_stopping_words(runs, n_boot)
            table_bt, words_bt = beta_along_markdown(along)
            words += words_bt
        table_th, words_th = threshold_markdown(runs)
        words += words_th
        table_div, text_div = divergence_markdown(runs)
    words.append(divergence_words(summaries) + (f" {text_div}" if runs is not None and text_div else ""))
    for label, c in comparisons:
        if c.prediction_source is not None:
            words.append(prediction_words(c, f"The {label} ({c.prediction_source})"))
    if runs is not None:
        sections += ["### Training diagnostics (from the step metrics)"]
        if table_of:
            caption = (
                "Data budget and overfitting (seed means; diverged and not-converged runs left out; best val in "
                "training = each seed's lowest periodic evaluation, averaged over the seeds, with the mean of their steps, which "
                "need not be an evaluation step):"
            )
            sections += [caption, table_of]
        if table_lr:
            sections += [table_lr]
        if table_bt:
            caption = (
                "β along training: the val loss at each evaluation step as every run's outcome (LR_opt per B refined "
                "as for the final loss; ≤ / ≥ = minimum on the grid's low / high edge; lowest val loss = best seed-mean "
                "config at that step):"
            )
            sections += [caption, table_bt]
        if table_th:
            sections += ["Clip thresholds at the same (B, LR):", table_th]
        if table_div:
            caption = (
                "Diverged runs:" if not runs.filter(pl.col("diverged") & ~an.nonfinite_expr()).height
                else "Runs counted as infinite loss (diverged, or finite with converged = false):"
            )
            sections += [caption, table_div]
    src = rs.source(experiment)
    seeds = sorted(set(summaries["seed"].drop_nulls().to_list()))
    compare_parts = []
    for label, c in comparisons:
        if len(comparisons) > 1:
            compare_parts.append(f"#### {label}")
        compare_parts.append(comparison_markdown(c))
    md = "\n\n".join(
        [
            f"## {experiment}",
            (
                f"{summaries.height} finished runs from `{src.path}` ({src.layout} layout; {configs.height} configs; "
                f"seeds {', '.join(map(str, seeds)) or '—'})."
            ),
            "### The answer in words",
            "\n\n".join(f"- {w}" for w in words),
            *(
                []
                if _only_one_lr(measurements)
                else ["### β fit", beta_markdown(measurements)]
            ),
            *sections,
            "### Predicted vs measured",
            *compare_parts,
            "### Plots",
            "\n\n".join(f"![{name}]({_relative(p, out_dir)})" for name, p in figures),
            "### Configs (means over seeds, the seed's columns)",
            configs_markdown(configs),
        ]
    )
    return ExperimentReport(
        experiment,
        md,
        tuple(p for _, p in figures),
        tuple(measurements),
        cmp if cmp.prediction_source is not None else None,
        tuple((label, c) for label, c in comparisons if c.prediction_source is not None),
        tuple(summary_rows(experiment, measurements, configs)),
    )


def default_report_path(experiments: Sequence[str], results_root: Path = Path("results")) -> Path:
    """results/<exp>/REPORT.md for one experiment, results/REPORT.md for several."""
    if len(experiments) == 1:
        return results_root / experiments[0] / REPORT_FILE
    return results_root / REPORT_FILE


def report_path(out: str | Path | None, experiments: Sequence[str], results_root: Path = Path("results")) -> Path:
    """The file a report goes to, checked before anything is written: `out`, or REPORT.md inside it
    when `out` is an existing folder or a string ending in a path separator (a folder to make; plots
    go beside the file, under plots/), else `default_report_path`. One-line PyphaseError when it
    cannot be written: a part of its path is a file, the report path or the plots folder beside it
    is of the wrong kind."""
    given = out
    path = default_report_path(experiments, results_root) if out is None else Path(out)
    if out is not None and (path.is_dir() or str(out).endswith(("/", os.sep))):
        path = path / REPORT_FILE
    option = f"--out {given}" if given is not None else f"report path {path}"
    check_output_folder(path.parent, option)
    if path.is_dir():
        raise PyphaseError(f"{option}: {path} is a folder, not a file")
    plot_dir = path.parent / PLOTS_DIR
    if plot_dir.exists() and not plot_dir.is_dir():
        raise PyphaseError(f"{option}: {plot_dir} is a file, not the folder of the report's plots")
    return path


def _scores_markdown(reports: Sequence[ExperimentReport]) -> str:
    """Target verdicts of every prediction set, one row per (experiment, prediction set)."""
    rows = []
    for r in reports:
        for label, c in r.comparisons:
            row = {"experiment": r.experiment, "prediction": label}
            for t in c.targets:
                row[t.name] = _verdict(t.passed) + (" (edge)" if t.reason == an.EDGE_REASON else "")
            rows.append(row)
    if not rows:
        return ""
    cols = ["experiment", "prediction", "beta", "clip_frequency", "lr_opt", "regime", "rules"]
    return (
        markdown_table(rows, cols)
        + f"\n\n(edge) = {an.EDGE_REASON}: the only measured LR_opt values the target could rest on are grid-edge "
        "bounds or single LRs, so it is not scored; values and caveats are in each experiment's \"Predicted vs "
        "measured\" section."
    )


def write_report(
    experiments: Sequence[str],
    *,
    root: Path | Sequence[Path] | None = None,
    prediction: Path | None = None,
    out: Path | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
    extra_predictions: Sequence[tuple[str, Path]] = (),
    preface: str | None = None,
    calibration: Path | None = None,
    prediction_label: str = BEFORE_SWEEP_LABEL,
    command: str | None = None,
    command_from: str | None = None,
) -> Path:
    """Write one Markdown report covering `experiments` (plots beside it under plots/) and return its path.

    `prediction` is scored as `prediction_label`; `extra_predictions` adds (label, path) sets scored
    the same way. `preface` (Markdown) goes first, under the title. The calibration section reports
    `calibration`, else the shipped default calibration when it was measured on the experiments'
    corpus. An explicit `calibration` also supplies the noise-scale rule's B_noise (its measured
    B_simple at fit_step, see `noise_scale`) unless `b_noise` is given. `command` (the CLI line that
    regenerates this report) is quoted in the Provenance section, run "from" `command_from` (default:
    `regenerate_from()`, the working directory). `out` as `report_path` takes it: an existing
    folder gets REPORT.md inside it; it is checked before any plot is drawn.

    All or nothing: every input (results, predictions, calibration) is read and checked first, then
    every plot is drawn into a temporary folder and the report's text built, and only then are the
    plots and the report moved into place (`_put_in_place`, the report file last). A failure or
    Ctrl-C before that leaves an earlier report and its plots as they were and no temporaries.
    """
    if not experiments:
        raise PyphaseError("name at least one experiment to report on")
    experiments = list(dict.fromkeys(experiments))  # one section per experiment, however often it is named
    out = report_path(out, experiments)  # checked before any plot is drawn
    b_noise, b_noise_source = noise_scale(b_noise, calibration)
    rs = scan(root, list(experiments))
    shas = set(rs.summaries.select("corpus_sha256").collect().to_series().drop_nulls().to_list())
    cal = _calibration_of(calibration, shas)
    sets = {
        e: (prediction_for(prediction, e), [(label, prediction_for(Path(p), e)) for label, p in extra_predictions])
        for e in experiments
    }
    # drawn under their own names in a private folder (the plot functions take the format from the
    # file's suffix, which a staged name lacks), then copied to staged names beside the report
    with CtrlCGuard() as ctrl_c, tempfile.TemporaryDirectory(prefix="pyphase-report-") as drawn:
        reports = [
            experiment_report(
                rs,
                e,
                out_dir=out.parent,
                prediction=sets[e][0],
                b_noise=b_noise,
                corpus=corpus,
                n_boot=n_boot,
                extra_predictions=sets[e][1],
                b_noise_source=b_noise_source,
                prediction_label=prediction_label,
                drawn_in=Path(drawn),
            )
            for e in experiments
        ]
        text = _report_text(experiments, reports, rs, preface=preface, cal=cal, command=command,
                            command_from=command_from)
        _put_in_place(out, text, {p.name: Path(drawn) / p.name for r in reports for p in r.plots}, ctrl_c)
    return out


def _report_text(
    experiments: Sequence[str],
    reports: Sequence[ExperimentReport],
    rs: ResultSet,
    *,
    preface: str | None,
    cal: tuple[dict[str, Any], Path] | None,
    command: str | None,
    command_from: str | None,
) -> str:
    """The whole report's Markdown: title, preface, summary, provenance, calibration, then each
    experiment's section (`write_report`)."""
    title = f"# pyphase report: {', '.join(experiments)}"
    head = [title]
    if preface:
        head.append(preface.strip())
    rows = [row for r in reports for row in r.summary_rows]
    head += ["## Summary", markdown_table(rows, list(rows[0]))]
    scores = _scores_markdown(reports)
    if scores:
        head += ["Prediction targets (issue 6):", scores]
    head += ["## Provenance", provenance_markdown(rs, experiments)]
    if command:
        where = command_from if command_from is not None else regenerate_from()
        head.append(f"Regenerate this report (plots included){' ' + where if where else ''} with:\n\n`{command}`")
    if cal is not None:
        head += ["## Calibration (what the simulator's default parameters were measured from)", calibration_markdown(*cal)]
    return "\n\n".join([*head, *(r.markdown for r in reports)]) + "\n"


def _put_in_place(out: Path, text: str, drawn: Mapping[str, Path], ctrl_c: CtrlCGuard) -> None:
    """Write the report `text` to `out` and its plots (file name -> where it was drawn) to plots/
    beside it, all or nothing, as `pyphase predict` and `results export` write theirs: each file is
    first written under a temporary name in its folder (`results.staged_paths`) and synced, then
    they are renamed onto their names one right after the other, the plots first and the report
    file last (`results._replace_together`); a Ctrl-C during the renames waits until they are done
    (`ctrl_c.held()`). A failure or Ctrl-C before that leaves an earlier report and its plots as they
    were, and removes the temporaries and the folders this call made. Temporaries that a report
    killed midway (SIGKILL, a crash) left are removed first, those of a writer still running
    excepted (`results.remove_stale_staged`).

    Plots of an earlier report that this one does not draw are left there, unlinked: REPORT.md is
    free Markdown (a preface may link other images under plots/) and several reports in one folder
    (`--out dir/a.md`, `--out dir/b.md`) share its plots/, so a report cannot tell which files there
    are only its own."""
    plot_dir = out.parent / PLOTS_DIR
    plots_staged = staged_paths(plot_dir, drawn)
    report_staged = staged_paths(out.parent, [out.name])
    plots_done: list[str] = []
    report_done: list[str] = []
    had_earlier = False
    made = missing_folders(plot_dir if drawn else out.parent)
    try:
        (plot_dir if drawn else out.parent).mkdir(parents=True, exist_ok=True)
        if drawn:  # what a report killed midway left: its plots need not have been these
            remove_stale_staged(plot_dir, plots_staged, name_glob=PLOT_GLOB)
        remove_stale_staged(out.parent, report_staged)
        had_earlier = out.exists() or any((plot_dir / name).exists() for name in drawn)
        for name, path in drawn.items():
            shutil.copyfile(path, plots_staged[name])
        report_staged[out.name].write_text(text, encoding="utf-8")
        for tmp in [*plots_staged.values(), *report_staged.values()]:
            _fsync(tmp)
        with ctrl_c.held():
            _replace_together(plot_dir, plots_staged, plots_done)
            _replace_together(out.parent, report_staged, report_done)
    except OSError as e:
        renamed = [f"{PLOTS_DIR}/{name}" for name in plots_done] + report_done
        kept = staged_write_failure(renamed, had_earlier, "report", "run report again")
        raise PyphaseError(f"cannot write the report {out} ({first_line(e)}){kept}") from e
    finally:
        remove_staged(plots_staged)
        remove_staged(report_staged)
        if not plots_done and not report_done:
            remove_empty_folders(made)


def compare_text(
    experiment: str,
    *,
    root: Path | Sequence[Path] | None = None,
    prediction: Path | None = None,
    b_noise: float | None = None,
    as_json: bool = False,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
    calibration: Path | None = None,
) -> str:
    """`pyphase compare`: the comparison of one experiment as Markdown, or as strict JSON. B_noise as
    in `write_report`: `b_noise`, else `calibration`'s measured B_simple, else the prediction JSON.
    Both say where the measurements were read: a "Measured: read from ..." line under the title, and
    the JSON's `measured_source` (the experiment folder) and `measured_layout`."""
    b_noise, b_noise_source = noise_scale(b_noise, calibration)
    rs = scan(root, experiment)
    summaries = rs.summaries.filter(pl.col("experiment") == experiment).collect()
    pred = prediction_for(prediction, experiment)
    cmp = an.compare(
        summaries,
        experiment=experiment,
        prediction=pred.trajectories if pred else None,
        prediction_meta=pred.meta if pred else None,
        prediction_source=pred.source if pred else None,
        b_noise=b_noise,
        b_noise_source=b_noise_source,
        n_boot=n_boot,
        run_configs=run_configs(rs, experiment, summaries) if pred else None,
    )
    src = rs.source(experiment)
    if as_json:
        data = cmp.to_dict()
        head = {k: data.pop(k) for k in ("experiment",) if k in data}
        return to_json(head | {"measured_source": str(src.path), "measured_layout": src.layout} | data)
    return (f"# {experiment}: predicted vs measured\n\nMeasured: {describe_source(src, code=True)}\n\n"
            + comparison_markdown(cmp))


# --------------------------------------------------------------------------- the `pyphase report` command
DEFAULT_RUNS = Path("runs")  # the roots read when neither --runs nor --results is given (`roots_from_options`)
DEFAULT_RESULTS = Path("results")  # also the root of the default report path


def parse_prediction_specs(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """`--prediction` values as (label, path): `PATH` is labelled "prediction", `LABEL=PATH` carries
    its own label (a spec that is itself an existing path is never split). Labels must be unique."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        label, path = BEFORE_SWEEP_LABEL, spec
        if "=" in spec and not Path(spec).exists():
            label, path = (part.strip() for part in spec.split("=", 1))
        if not label or not path:
            raise PyphaseError(f"--prediction {spec!r}: expected PATH or LABEL=PATH")
        if any(label == seen for seen, _ in out):
            raise PyphaseError(f"--prediction: label '{label}' given twice (name the sets LABEL=PATH)")
        out.append((label, Path(path)))
    return out


def report_command(
    experiments: Sequence[str],
    *,
    predictions: Sequence[str] = (),
    preface: Path | None = None,
    calibration: Path | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    out: Path,
    runs: Path | None = None,
    results: Path | None = None,
    results_only: bool = False,
) -> str:
    """The canonical `pyphase report` line for these options (fixed option order, shell-quoted), so
    that the report quotes the one command that regenerates it, however the options were typed.
    `runs` / `results` are None when not given: a given one is quoted even when it names the default
    folder, since giving it changes what is read (`roots_from_options`); with `results_only`, --runs
    (not read) is left out, and so is --results when it is the default."""
    args = ["pyphase", "report", *experiments]
    for spec in predictions:
        args += ["--prediction", spec]
    for flag, value in (("--preface", preface), ("--calibration", calibration), ("--corpus", corpus)):
        if value is not None:
            args += [flag, Path(value).as_posix()]
    if b_noise is not None:
        args += ["--b-noise", f"{b_noise:g}"]
    if runs is not None and not results_only:
        args += ["--runs", Path(runs).as_posix()]
    if results is not None and not (results_only and Path(results) == DEFAULT_RESULTS):
        args += ["--results", Path(results).as_posix()]
    if results_only:
        args.append("--results-only")
    args += ["--out", Path(out).as_posix()]
    return shlex.join(args)


def regenerate_from(paths: Sequence[Path] | None = None) -> str:
    """Where the quoted command must run, as the report says it: "from the repository root" when the
    working directory is one (it holds .git and pyproject.toml: the committed reports), else "from
    `<the working directory>`" when a relative path is read or written, else "" (every path is
    absolute, e.g. the reports of a sweep outside the repository, so the directory does not matter).
    `paths` are the paths the command reads and writes (None: take it that some are relative)."""
    cwd = Path.cwd()
    if (cwd / ".git").exists() and (cwd / "pyproject.toml").is_file():
        return "from the repository root"
    if paths is not None and all(Path(p).is_absolute() for p in paths):
        return ""
    return f"from `{cwd.as_posix()}`"


def _read_preface(preface: str | Path | None) -> str | None:
    """The --preface file's text (UTF-8); a file that cannot be read is a one-line error naming it."""
    if preface is None:
        return None
    try:
        return Path(preface).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise PyphaseError(f"--preface {preface}: cannot read it as UTF-8 text ({why})") from None


def report_from_options(
    experiments: Sequence[str],
    *,
    predictions: Sequence[str] = (),
    preface: Path | None = None,
    calibration: Path | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    out: str | Path | None = None,
    runs: Path | None = None,
    results: Path | None = None,
    results_only: bool = False,
) -> Path:
    """`pyphase report`: parse the prediction specs, read the preface file, write the report (which
    quotes `report_command` in its Provenance section) and return its path. `runs` / `results` are
    the --runs / --results options, None when not given: the folders read are `roots_from_options`
    (only the given ones; runs/ then results/ when neither is given). With `results_only` only
    `results` (default results/) is read, so uncommitted local runs cannot change a committed report."""
    if not experiments:
        raise PyphaseError("name at least one experiment to report on")
    sets = parse_prediction_specs(predictions)
    if preface is not None and not Path(preface).is_file():
        raise PyphaseError(f"--preface {preface}: no such file")
    results_root = Path(results) if results is not None else DEFAULT_RESULTS
    out = report_path(out, experiments, results_root)  # an existing folder: REPORT.md inside it (quoted so)
    command = report_command(
        experiments, predictions=predictions, preface=preface, calibration=calibration, b_noise=b_noise,
        corpus=corpus, out=out, runs=runs, results=results, results_only=results_only,
    )
    read = [results_root] if results_only else roots_from_options(runs, results)
    paths = [out, *read, *(p for _, p in sets), *(p for p in (preface, calibration, corpus) if p is not None)]
    return write_report(
        experiments,
        root=read,
        prediction=sets[0][1] if sets else None,
        prediction_label=sets[0][0] if sets else BEFORE_SWEEP_LABEL,
        extra_predictions=sets[1:],
        out=out,
        b_noise=b_noise,
        corpus=corpus,
        preface=_read_preface(preface),
        calibration=calibration,
        command=command,
        command_from=regenerate_from(paths),
    )
