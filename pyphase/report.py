"""Markdown reports: the per-config table in the seed's columns, β fits, predicted-vs-measured
comparison, plot links, and the answer in words generated from those numbers. `pyphase compare`
prints the comparison section of this module; `pyphase report` writes whole reports."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pyphase import analysis as an
from pyphase import plots
from pyphase.errors import PyphaseError
from pyphase.results import (
    CorpusEntropies,
    PredictionFiles,
    ResultSet,
    corpus_entropies,
    entropies_of_corpus,
    read_prediction,
    scan,
    to_json,
)
from pyphase.schema import REGIME_SATURATION_AT, REGIMES, SEED_SUMMARY_COLUMNS

REPORT_FILE = "REPORT.md"


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
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _interval_text(m: an.BetaMeasurement) -> str:
    if m.ci_low is None:
        return "undefined"
    return f"[{m.ci_low:.2f}, {m.ci_high:.2f}]"


def _label(m: an.BetaMeasurement | an.GroupComparison) -> str:
    return an.group_label(m.gradient_clip, m.optimizer)


# --------------------------------------------------------------------------- tables
def configs_markdown(configs: pl.DataFrame) -> str:
    """Per-config table in the seed's columns (means over seeds) plus seed and divergence counts."""
    cols = SEED_SUMMARY_COLUMNS[:3] + ["optimizer"] + SEED_SUMMARY_COLUMNS[3:] + ["n_seeds", "n_diverged"]
    return markdown_table(configs.select(cols).to_dicts(), cols)


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
                "interval method": m.interval_method,
                "C": m.fit.c if m.fit else None,
                "R²": m.fit.r2 if m.fit else None,
                "naive β ± 2 s.e. (seed's method)": naive,
                "B at grid edge": ", ".join(str(o.batch_size) for o in m.optima if o.at_edge) or "none",
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
    return (
        markdown_table(fits, list(fits[0]))
        + "\n\n"
        + markdown_table(optima, ["group", "B", "LR_opt", "grid argmin", "loss at argmin", "LRs", "seeds", "how"])
    )


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not scored"}[passed]


def comparison_markdown(cmp: an.Comparison) -> str:
    """Targets, β, LR_opt per B, rules, and clip-frequency/regime scores as Markdown."""
    parts = [f"Prediction: {cmp.prediction_source or 'none given (rules scored on the measurement only)'}"]
    parts.append(
        markdown_table(
            [t.to_dict() | {"result": _verdict(t.passed)} for t in cmp.targets],
            ["name", "criterion", "value", "result"],
        )
    )
    betas = [
        {
            "group": _label(g),
            "measured β": g.measured.fit.beta if g.measured.fit else None,
            "measured 95%": _interval_text(g.measured),
            "predicted β": g.predicted.fit.beta if g.predicted and g.predicted.fit else None,
            "predicted 95%": _interval_text(g.predicted) if g.predicted else "—",
        }
        for g in cmp.groups
    ]
    parts.append(markdown_table(betas, list(betas[0])))
    lr_rows = [
        r.to_dict() | {"group": _label(g), "measured at edge": r.measured_at_edge}
        for g in cmp.groups
        for r in g.lr_rows
    ]
    parts.append(
        markdown_table(
            lr_rows, ["group", "batch_size", "measured", "measured at edge", "predicted", "predicted_from", "ratio"]
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
    if m.ci_low is None:
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
        return f"**{group}**: β is not measured: fewer than two batch sizes have a finite LR_opt."
    edges = [o for o in m.optima if o.at_edge]
    edge_notes = "; ".join(f"B={o.batch_size}: {o.note}" for o in edges)
    if len(edges) == len(m.optima):
        return (
            f"**{group}**: ⚠ β is not measured: every batch size's minimum is on a grid edge ({edge_notes}). "
            f"A line through those grid values has slope {m.fit.beta:.2f}, which reflects the chosen grid, "
            "not the loss."
        )
    text = f"**{group}**: LR_opt ∝ B^{m.fit.beta:.2f}"
    if m.ci_low is not None:
        text += f" (95% interval {m.ci_low:.2f} to {m.ci_high:.2f}, {m.interval_method}; "
        text += f"R² {fmt(m.fit.r2)}; {m.fit.n} batch sizes)."
    else:
        text += f" ({m.interval_method}; no interval is given rather than an invented one)."
    text += _beta_meaning(m)
    if m.naive is not None:
        text += f" The seed's grid-argmin method gives β = {m.naive.beta:.2f} on the same runs."
    coarse = [o for o in m.optima if not o.at_edge and not o.refined and math.isfinite(o.lr_opt)]
    if coarse:
        text += " Not refined (grid resolution only): " + "; ".join(f"B={o.batch_size}: {o.note}" for o in coarse)
        text += "."
    if edges:
        text += f" ⚠ {edge_notes}. β is a bound, not a measurement, until the grid is extended past those edges."
    return text


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
            f"norm above the threshold and {check.after_equals_before} report after = before although clipping "
            "fired (seed 000's error); the saturation verdict rests on clip frequency only."
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
    if best["loss"] >= uni:
        verdict = (
            f"at or above the unigram entropy {uni:.3f}: the models learned no more than letter frequencies "
            "(still on the unigram plateau)"
        )
    elif best["loss"] >= bi:
        verdict = (
            f"{uni - best['loss']:.3f} below the unigram entropy {uni:.3f} but above the bigram entropy "
            f"{bi:.3f}: the models left the unigram plateau without reaching bigram statistics"
        )
    else:
        verdict = (
            f"below both the unigram ({uni:.3f}) and bigram ({bi:.3f}) entropies: the models left the "
            "unigram plateau and use more than one character of context"
        )
    return text + f" That is {verdict}; entropies from {entropies.source}."


def divergence_words(summaries: pl.DataFrame) -> str:
    n = an.with_effective_loss(summaries)["diverged"].sum()
    why = "NaN/inf loss, converged=false or a diverged step"
    return f"{n} of {summaries.height} runs diverged ({why}) and count as infinite loss."


def prediction_words(cmp: an.Comparison) -> str:
    scored = [t for t in cmp.targets if t.passed is not None]
    if not scored:
        return "No prediction was scored."
    passed = [t.name for t in scored if t.passed]
    failed = [t.name for t in scored if not t.passed]
    return f"The prediction passes {len(passed)} of {len(scored)} scored targets" + (
        f" (fails: {', '.join(failed)})." if failed else "."
    )


# --------------------------------------------------------------------------- whole report
@dataclass(frozen=True)
class ExperimentReport:
    """What one experiment's section was built from (kept for tests and callers)."""

    experiment: str
    markdown: str
    plots: tuple[Path, ...]
    measurements: tuple[an.BetaMeasurement, ...]
    comparison: an.Comparison | None


def prediction_for(path: Path | None, experiment: str) -> PredictionFiles | None:
    """The prediction of one experiment: `path/<experiment>/` when that folder exists, else `path`."""
    if path is None:
        return None
    own = Path(path) / experiment
    return read_prediction(own if own.is_dir() else path)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _make_plots(
    rs: ResultSet,
    experiment: str,
    summaries: pl.DataFrame,
    configs: pl.DataFrame,
    measurements: Sequence[an.BetaMeasurement],
    cmp: an.Comparison | None,
    plot_dir: Path,
    entropies: CorpusEntropies | None,
) -> list[tuple[str, Path]]:
    out = [
        (
            "LR_opt vs batch size",
            plots.plot_lr_opt(
                measurements,
                plot_dir / f"{experiment}_lr_opt.png",
                predicted=[g.predicted for g in cmp.groups] if cmp else (),
                title=f"{experiment}: LR_opt vs batch size",
            ),
        ),
        ("Final validation loss", plots.plot_loss_heatmap(configs, plot_dir / f"{experiment}_loss_heatmap.png")),
    ]
    if configs["gradient_clip"].is_not_null().any():
        out.append(
            (
                "Clip frequency and regimes",
                plots.plot_clip_heatmap(configs, plot_dir / f"{experiment}_clip_heatmap.png"),
            )
        )
    steps = rs.steps.filter(pl.col("experiment") == experiment).collect()
    if steps.height:
        out.append(
            (
                "Loss curves",
                plots.plot_loss_curves(
                    steps,
                    summaries,
                    plot_dir / f"{experiment}_loss_curves.png",
                    entropies=entropies,
                    title=f"{experiment}: loss curves (mean over seeds)",
                ),
            )
        )
    if cmp is not None and cmp.prediction_source is not None:
        out.append(
            (
                "Predicted vs measured",
                plots.plot_predicted_vs_measured(cmp, plot_dir / f"{experiment}_predicted_vs_measured.png"),
            )
        )
    return out


def experiment_report(
    rs: ResultSet,
    experiment: str,
    *,
    out_dir: Path,
    prediction: PredictionFiles | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
) -> ExperimentReport:
    """One experiment's Markdown section; its plots go to `out_dir/plots/` and are linked relatively.

    Corpus entropies come from `corpus` when given (checked against the runs' corpus_sha256), else
    from what the results recorded (see `pyphase.results.corpus_entropies`)."""
    summaries = rs.summaries.filter(pl.col("experiment") == experiment).collect()
    configs = an.config_table(summaries)
    cmp = an.compare(
        summaries,
        experiment=experiment,
        prediction=prediction.trajectories if prediction else None,
        prediction_meta=prediction.meta if prediction else None,
        prediction_source=prediction.source if prediction else None,
        b_noise=b_noise,
        n_boot=n_boot,
    )
    measurements = [g.measured for g in cmp.groups]  # compare measured every group: one bootstrap, not two
    entropies = entropies_of_corpus(corpus, rs, experiment) if corpus is not None else corpus_entropies(rs, experiment)
    figures = _make_plots(rs, experiment, summaries, configs, measurements, cmp, out_dir / "plots", entropies)
    words = [beta_words(m) for m in measurements]
    words += [
        clipping_words(an.check_clip_norms(summaries), configs),
        plateau_words(configs, entropies),
        divergence_words(summaries),
    ]
    if prediction is not None:
        words.append(prediction_words(cmp))
    src = rs.source(experiment)
    md = "\n\n".join(
        [
            f"## {experiment}",
            f"{summaries.height} finished runs from `{src.path}` ({src.layout} layout).",
            "### The answer in words",
            "\n\n".join(f"- {w}" for w in words),
            "### β fit",
            beta_markdown(measurements),
            "### Predicted vs measured",
            comparison_markdown(cmp),
            "### Plots",
            "\n\n".join(f"![{name}]({_relative(p, out_dir)})" for name, p in figures),
            "### Configs (means over seeds, the seed's columns)",
            configs_markdown(configs),
        ]
    )
    return ExperimentReport(experiment, md, tuple(p for _, p in figures), tuple(measurements), cmp)


def default_report_path(experiments: Sequence[str], results_root: Path = Path("results")) -> Path:
    """results/<exp>/REPORT.md for one experiment, results/REPORT.md for several."""
    if len(experiments) == 1:
        return results_root / experiments[0] / REPORT_FILE
    return results_root / REPORT_FILE


def write_report(
    experiments: Sequence[str],
    *,
    root: Path | Sequence[Path] | None = None,
    prediction: Path | None = None,
    out: Path | None = None,
    b_noise: float | None = None,
    corpus: Path | None = None,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
) -> Path:
    """Write one Markdown report covering `experiments` (plots beside it under plots/) and return its path."""
    if not experiments:
        raise PyphaseError("name at least one experiment to report on")
    rs = scan(root, list(experiments))
    out = Path(out) if out is not None else default_report_path(experiments)
    sections = [
        experiment_report(
            rs,
            e,
            out_dir=out.parent,
            prediction=prediction_for(prediction, e),
            b_noise=b_noise,
            corpus=corpus,
            n_boot=n_boot,
        ).markdown
        for e in experiments
    ]
    title = f"# pyphase report: {', '.join(experiments)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join([title, *sections]) + "\n")
    return out


def compare_text(
    experiment: str,
    *,
    root: Path | Sequence[Path] | None = None,
    prediction: Path | None = None,
    b_noise: float | None = None,
    as_json: bool = False,
    n_boot: int = an.DEFAULT_BOOTSTRAP,
) -> str:
    """`pyphase compare`: the comparison of one experiment as Markdown, or as strict JSON."""
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
        n_boot=n_boot,
    )
    return (
        to_json(cmp.to_dict()) if as_json else f"# {experiment}: predicted vs measured\n\n" + comparison_markdown(cmp)
    )
