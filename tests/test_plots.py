"""Every figure is written as a non-empty PNG of sensible size, including the degenerate inputs
(no clipped configs, no step metrics, diverged cells, edge optima)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib import image
from test_analysis import LRS, as_prediction, bowl_summaries

from pyphase import analysis as an
from pyphase import plots
from pyphase.results import CorpusEntropies

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_px: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    h, w = image.imread(path).shape[:2]
    assert h >= min_px and w >= min_px
    assert path.stat().st_size > 10_000  # an empty canvas compresses to a few kB


@pytest.fixture(scope="module")
def summaries() -> pl.DataFrame:
    clipped = bowl_summaries(seeds=2, lrs=LRS[::2])
    off = bowl_summaries(seeds=2, clip=None, lrs=LRS[::2]).with_columns(
        pl.when(pl.col("lr") >= 0.1).then(False).otherwise(pl.col("converged")).alias("converged")
    )
    return pl.concat([clipped, off])


def synthetic_steps(summaries: pl.DataFrame) -> pl.DataFrame:
    """Like the trainer's: step 0 is an eval-only row (train columns and lr null), lr warms up."""
    rows = []
    for r in summaries.iter_rows(named=True):
        rows.append((r["run_id"], 0, None, None, None, None, None, r["final_train_loss"] + 2.02))
        for s in range(50, 1001, 50):
            loss = r["final_train_loss"] + 2.0 * math.exp(-s / 200)
            lr = r["lr"] * min(1.0, s / 200)
            rows.append((r["run_id"], s, lr, loss, 1.0, 1.0, True, loss + 0.02 if s % 200 == 0 else None))
    cols = ["run_id", "step", "lr", "train_loss", "grad_norm_before", "grad_norm_after", "clipped", "val_loss"]
    return pl.DataFrame(rows, schema=cols, orient="row")


def test_lr_opt_plot(tmp_path: Path, summaries: pl.DataFrame) -> None:
    ms = an.measure_beta(summaries, n_boot=100)
    pred = an.measure_beta(an.prediction_summaries(as_prediction(bowl_summaries(beta=0.7, c=1e-4, seeds=1))), n_boot=10)
    assert_png(plots.plot_lr_opt(ms, tmp_path / "a" / "lr.png", predicted=[None, pred[0]]))


def test_lr_opt_plot_with_edges_and_undefined_interval(tmp_path: Path) -> None:
    df = bowl_summaries(batches=(16, 256), lrs=LRS[:6], seeds=1)  # LR_opt(256) = 3.2e-3 > 1.8e-3
    m = an.measure_beta(df)[0]
    assert m.any_at_edge and m.ci_low is None
    assert_png(plots.plot_lr_opt([m], tmp_path / "edge.png"))


def test_lr_opt_plot_with_batch_sizes_that_locate_no_optimum(tmp_path: Path) -> None:
    # B = 16, 32, 64 gridded; B = 128 at one LR (drawn as a hollow square, not on the line); B = 256
    # flat (no LR_opt: no marker at all, least of all a low-edge ▼)
    grid = LRS[2:10]
    flat = bowl_summaries(batches=(256,), lrs=grid, seeds=2).with_columns(pl.lit(4.17).alias("final_val_loss"))
    df = pl.concat([bowl_summaries(batches=(16, 32, 64), lrs=grid, seeds=2),
                    bowl_summaries(batches=(128,), lrs=(1e-2,), seeds=2), flat])
    m = an.measure_beta(df, n_boot=100)[0]
    assert m.fit is not None and m.fit.n == 3 and m.ci_low is not None
    assert [plots._marker_kind(o) for o in m.optima] == ["refined", "refined", "refined", "only", "flat"]
    labels = [h.get_label() for h in plots._marker_legend([m])]
    assert "only one LR tested" in labels and not any("low grid edge" in x for x in labels)
    assert "B=128, 256 not in the fit" in plots._fit_label(m) and "only a bound" not in plots._fit_label(m)
    # the band pivots on the centroid of the fit's own points
    lo, hi = plots._band(m, np.array([16.0, 32.0, 64.0]))
    fit = m.fit.lr_at(np.array([16.0, 32.0, 64.0]))
    assert np.all(lo <= fit * (1 + 1e-12)) and np.all(fit <= hi * (1 + 1e-12))
    assert_png(plots.plot_lr_opt([m], tmp_path / "mixed.png"))
    # phase3b: one LR at each of two batch sizes, no fit; compare and both plots still draw
    one = pl.concat([bowl_summaries(batches=(32,), lrs=(1e-3,), seeds=2),
                     bowl_summaries(batches=(256,), lrs=(5e-2,), seeds=2)])
    m1 = an.measure_beta(one, n_boot=10)[0]
    assert m1.fit is None
    assert_png(plots.plot_lr_opt([m1], tmp_path / "one.png"))
    cmp = an.compare(one, experiment="3b", prediction=as_prediction(df.filter(pl.col("batch_size") != 256)), n_boot=10)
    assert plots._lr_points(cmp) == []
    assert_png(plots.plot_predicted_vs_measured(cmp, tmp_path / "pvm.png"), min_px=250)


def test_interval_band_contains_the_fit(summaries: pl.DataFrame) -> None:
    m = an.measure_beta(summaries, n_boot=200)[1]
    bs = np.geomspace(8, 512, 20)
    lo, hi = plots._band(m, bs)
    fit = m.fit.lr_at(bs)
    assert np.all(lo <= fit * (1 + 1e-12)) and np.all(fit <= hi * (1 + 1e-12))


def test_heatmaps(tmp_path: Path, summaries: pl.DataFrame) -> None:
    configs = an.config_table(summaries)
    assert configs.filter(pl.col("n_diverged") > 0).height > 0
    assert_png(plots.plot_loss_heatmap(configs, tmp_path / "loss.png"))
    assert_png(plots.plot_clip_heatmap(configs, tmp_path / "clip.png"))


def test_clip_heatmap_without_clipped_configs(tmp_path: Path) -> None:
    configs = an.config_table(bowl_summaries(clip=None, seeds=1, lrs=LRS[::3]))
    path = plots.plot_clip_heatmap(configs, tmp_path / "clip.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_loss_curves_with_entropy_lines(tmp_path: Path, summaries: pl.DataFrame) -> None:
    sub = summaries.filter(pl.col("batch_size").is_in([16, 256]))
    ent = CorpusEntropies(3.3128, 2.4526, 65, "test")
    assert_png(plots.plot_loss_curves(synthetic_steps(sub), sub, tmp_path / "curves.png", entropies=ent))


def test_loss_curves_without_steps(tmp_path: Path, summaries: pl.DataFrame) -> None:
    empty = synthetic_steps(summaries.head(1)).head(0)
    path = plots.plot_loss_curves(empty, summaries, tmp_path / "none.png", entropies=None)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_predicted_vs_measured(tmp_path: Path, summaries: pl.DataFrame) -> None:
    pred = as_prediction(bowl_summaries(beta=0.6, c=1.5e-4, seeds=1, noise=0.0, lrs=LRS[::2]))
    cmp = an.compare(summaries, experiment="s", prediction=pred, n_boot=50)
    assert_png(plots.plot_predicted_vs_measured(cmp, tmp_path / "pvm.png"))


# --------------------------------------------------------------------------- layouts chosen from the data
def _threshold_sweep() -> pl.DataFrame:
    """Seed Phase 3b's shape: clip none/0.1/1, each at (B=32, LR=1e-3) and (B=256, LR=5e-2), 2 seeds."""
    parts = []
    for clip in (None, 0.1, 1.0):
        for b, lr in ((32, 1e-3), (256, 5e-2)):
            parts.append(bowl_summaries(batches=(b,), lrs=(lr,), seeds=2, clip=clip, rng_seed=int(b + 10 * (clip or 0))))
    return pl.concat(parts, how="vertical_relaxed")


def test_threshold_sweep_is_one_grid_of_rows_by_thresholds(tmp_path: Path) -> None:
    configs = an.config_table(_threshold_sweep())
    parts = an.groups(configs)
    assert plots._one_lr_per_batch(parts) and not plots._one_lr_per_batch(an.groups(an.config_table(bowl_summaries())))
    rows, cols, z = plots._sweep_grid(parts, "final_val_loss")
    assert rows == ["B=32, LR=0.001", "B=256, LR=0.05"]
    assert cols == ["clip=off/adamw", "clip=0.1/adamw", "clip=1/adamw"]
    for j, (clip, _, g) in enumerate(parts):
        for i, b in enumerate((32, 256)):
            assert z[i, j] == g.filter(pl.col("batch_size") == b)["final_val_loss"].item()
    loss = plots.plot_loss_heatmap(configs, tmp_path / "loss.png")
    clip = plots.plot_clip_heatmap(configs, tmp_path / "clip.png")
    for path in (loss, clip):  # one panel: a short figure, not a grid of mostly empty panels
        assert_png(path, min_px=250)
        assert image.imread(path).shape[0] < 400


def test_marker_legend_lists_only_the_kinds_drawn() -> None:
    m = an.measure_beta(bowl_summaries(batches=(16, 32, 256), lrs=LRS[:6], seeds=1, noise=0.0))[0]
    kinds = {plots._marker_kind(o) for o in m.optima}
    assert kinds == {"refined", "high"}
    labels = [h.get_label() for h in plots._marker_legend([m])]
    assert labels == ["parabola-refined minimum", "at high grid edge (LR_opt ≥)", "grid argmin (naive)"]


def test_loss_curves_drop_a_diverged_run_after_its_divergence() -> None:
    s = bowl_summaries(batches=(32,), lrs=(1e-3,), seeds=2).with_columns(
        pl.when(pl.col("seed") == 1).then(400).otherwise(None).alias("diverged_step")
    )
    steps = synthetic_steps(s).with_columns(
        # the frozen model of seed 1 reports a constant bad loss after step 400
        pl.when((pl.col("run_id") == s["run_id"][1]) & (pl.col("step") > 400))
        .then(9.0)
        .otherwise(pl.col("val_loss"))
        .alias("val_loss")
    )
    curves = plots._binned_curves(steps, s)
    val = curves.filter(pl.col("val_loss").is_not_null())
    seed0 = steps.filter((pl.col("run_id") == s["run_id"][0]) & pl.col("val_loss").is_not_null())
    late = val.filter(pl.col("step") > 400).sort("step")
    assert late["val_loss"].to_list() == seed0.filter(pl.col("step") > 400).sort("step")["val_loss"].to_list()
    early = val.filter(pl.col("step") <= 400).sort("step")["val_loss"].to_list()
    both = steps.filter(pl.col("val_loss").is_not_null() & (pl.col("step") <= 400))
    assert early == both.group_by("step").agg(pl.col("val_loss").mean()).sort("step")["val_loss"].to_list()


def test_predicted_vs_measured_without_an_lr_grid_has_only_the_clip_panel(tmp_path: Path) -> None:
    s = _threshold_sweep()
    cmp = an.compare(s, experiment="sweep", prediction=as_prediction(s), n_boot=10)
    assert plots._lr_points(cmp) == []
    path = plots.plot_predicted_vs_measured(cmp, tmp_path / "pvm.png")
    h, w = image.imread(path).shape[:2]
    assert w < 700 and h > 300


def test_nearly_coincident_lr_points_share_one_label() -> None:
    s = bowl_summaries(batches=(32, 64, 128), lrs=LRS[:6], seeds=1, noise=0.0)  # B=64, 128 past the high edge
    # predicted optima 0.7% apart per doubling of B: distinct values, one label's width apart at most
    pred = as_prediction(bowl_summaries(beta=0.01, c=3e-4, batches=(32, 64, 128), lrs=LRS[:6], seeds=1, noise=0.0))
    cmp = an.compare(s, experiment="s", prediction=pred, n_boot=10)
    rows = cmp.groups[0].lr_rows
    assert [r.measured_at_edge for r in rows] == [False, True, True]
    assert rows[1].measured == rows[2].measured and rows[1].predicted != rows[2].predicted
    points = plots._lr_points(cmp)[0][1]
    assert [p[4] for p in points] == ["32", "64,128"]


def test_clip_text_never_rounds_across_a_regime_threshold() -> None:
    from pyphase.schema import regime_of

    for v, text in ((0.9863, "0.98"), (0.497, "0.49"), (0.5, "0.50"), (0.99, "0.99"), (1.0, "1.00"), (0.0, "0.00")):
        assert plots.clip_text(v) == text
        assert regime_of(float(text)) == regime_of(v)  # the printed number is in the cell's own regime
    assert plots.clip_text(float("nan")) == "–"


def test_loss_curves_mark_each_diverged_run_at_its_first_non_finite_step(tmp_path: Path, monkeypatch) -> None:
    s = bowl_summaries(batches=(32,), lrs=(1e-3, 1e-2), seeds=2).with_columns(
        pl.when((pl.col("seed") == 1) & (pl.col("lr") == 1e-2)).then(400).otherwise(None).alias("diverged_step")
    )
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    plots.plot_loss_curves(synthetic_steps(s), s, tmp_path / "c.png", entropies=None)
    crosses = [(ln.get_xdata()[0], ln.get_color()) for ax in figs[0].axes for ln in ax.get_lines()
               if ln.get_marker() == "x"]
    assert crosses == [(401, "red")]
    labels = [t.get_text() for t in figs[0].legends[0].get_texts()]
    assert any("diverged" in t for t in labels)
    assert any("corpus entropies not recorded" in t for t in labels)  # no milestone lines, and it says why


def test_threshold_sweep_loss_colours_each_row_by_its_excess_over_the_rows_best(tmp_path: Path, monkeypatch) -> None:
    """phase3b's rows differ by ~1.2 nats (B = 32 against 256): on one scale the thresholds' differences
    within a row were invisible. The colours are each cell's excess over its row's best; the
    numbers stay the losses."""
    configs = an.config_table(_threshold_sweep())
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    plots.plot_loss_heatmap(configs, tmp_path / "h.png")
    colour = np.asarray(figs[0].axes[0].get_images()[0].get_array())
    assert np.allclose(np.nanmin(colour, axis=1), 0.0) and np.nanmax(colour) < 1.0
    texts = {t.get_text() for t in figs[0].axes[0].texts}
    for r in configs.iter_rows(named=True):
        assert f"{r['final_val_loss']:.3f}" in texts


def _heatmap_texts(configs: pl.DataFrame, path: Path, monkeypatch) -> tuple[dict, str, dict]:
    """The loss heatmap's cell labels by (B, LR) (one clip/optimizer group), its title, and each
    (B, LR)'s colour value (NaN = blank)."""
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, p: figs.append(fig) or p)
    plots.plot_loss_heatmap(configs, path)
    ax = figs[0].axes[0]
    bs = [int(t.get_text()) for t in ax.get_yticklabels()]
    lrs = sorted(configs["lr"].unique().to_list())
    cells = {(bs[round(t.get_position()[1])], lrs[round(t.get_position()[0])]): t.get_text() for t in ax.texts}
    colour = np.ma.filled(ax.get_images()[0].get_array().astype(float), np.nan)
    colours = {(b, lr): colour[i, j] for i, b in enumerate(bs) for j, lr in enumerate(lrs)}
    return cells, figs[0]._suptitle.get_text(), colours


def test_loss_heatmap_tells_diverged_from_not_converged_cells(tmp_path: Path, monkeypatch) -> None:
    """A finite run with converged = false is "not converged", not "✗ diverged": the report's text
    tells the two apart and the heatmap must not contradict it. Both stay blank (infinite loss)."""
    lrs = LRS[2:6]
    s = bowl_summaries(batches=(32, 64), lrs=lrs, seeds=2)
    not_conv = (pl.col("batch_size") == 32) & (pl.col("lr") == lrs[1])  # both seeds: finite, converged = false
    nan = (pl.col("batch_size") == 64) & (pl.col("lr") == lrs[3]) & (pl.col("seed") == 1)  # one seed: NaN
    some_nc = (pl.col("batch_size") == 64) & (pl.col("lr") == lrs[0]) & (pl.col("seed") == 0)
    mixed = (pl.col("batch_size") == 32) & (pl.col("lr") == lrs[2])  # seed 0 NaN, seed 1 not converged
    s = s.with_columns(
        pl.when(not_conv | some_nc | (mixed & (pl.col("seed") == 1))).then(False).otherwise(pl.col("converged"))
        .alias("converged"),
        pl.when(nan | (mixed & (pl.col("seed") == 0))).then(float("nan")).otherwise(pl.col("final_val_loss"))
        .alias("final_val_loss"),
        pl.when(nan | (mixed & (pl.col("seed") == 0))).then(300).otherwise(None).cast(pl.Int64).alias("diverged_step"),
    )
    configs = an.config_table(s)
    cells, title, colours = _heatmap_texts(configs, tmp_path / "h.png", monkeypatch)
    assert cells[(32, lrs[1])] == "not converged"
    assert cells[(64, lrs[0])] == "1 of 2 seeds\nnot converged"
    assert cells[(64, lrs[3])] == "✗ 1 of 2\nseeds diverged"
    assert cells[(32, lrs[2])] == "✗ 1 diverged,\n1 not converged"
    assert not any("✗" in t for k, t in cells.items() if k in {(32, lrs[1]), (64, lrs[0])})
    assert "not converged: finite loss, converged = false" in title
    # every such cell is blank, as before: no colour where any seed counts as infinite loss
    bad = {(r["batch_size"], r["lr"]) for r in configs.filter(pl.col("n_diverged") > 0).iter_rows(named=True)}
    assert len(bad) == 4 and all(np.isnan(colours[k]) == (k in bad) for k in colours)
    # a table without the new columns (an older caller): every such cell is "diverged", as it was
    old, old_title, _ = _heatmap_texts(configs.drop("n_nonfinite", "n_not_converged"), tmp_path / "o.png", monkeypatch)
    assert old[(32, lrs[1])] == "✗ diverged" and old[(64, lrs[0])] == "✗ 1 of 2\nseeds diverged"
    assert old[(32, lrs[2])] == "✗ diverged" and "not converged" not in old_title
    # a table whose only infinite losses are diverged runs keeps today's labels and title
    only_div = an.config_table(s.filter(~(not_conv | (pl.col("batch_size") == 64) & (pl.col("lr") == lrs[0]) | mixed)))
    cells, title, _ = _heatmap_texts(only_div, tmp_path / "d.png", monkeypatch)
    assert cells[(64, lrs[3])] == "✗ 1 of 2\nseeds diverged" and "not converged" not in title


def test_threshold_sweep_heatmap_labels_a_not_converged_cell(tmp_path: Path, monkeypatch) -> None:
    s = _threshold_sweep().with_columns(
        pl.when((pl.col("gradient_clip") == 0.1) & (pl.col("batch_size") == 256)).then(False)
        .otherwise(pl.col("converged")).alias("converged")
    )
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, p: figs.append(fig) or p)
    plots.plot_loss_heatmap(an.config_table(s), tmp_path / "h.png")
    texts = [t.get_text() for t in figs[0].axes[0].texts]
    assert "not converged" in texts and not any("diverged" in t for t in texts)
