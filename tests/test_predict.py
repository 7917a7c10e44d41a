"""`pyphase.predict` and `pyphase.nqm`: option parsing, NQM parameter files (exact round trip,
built-in vs shipped calibration, every malformed file), regime boundaries, the summary of a
synthetic table with a known optimum, and a small real prediction with its output files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pyphase import nqm
from pyphase.errors import PyphaseError
from pyphase.nqm import NQMParams
from pyphase.predict import (
    OptimizerSettings,
    edge_extension,
    optimizer_settings,
    format_summary,
    grid_optima,
    zoom_points,
    parse_batches,
    parse_clips,
    parse_lr_grid,
    predict,
    regime_boundary,
    summarize,
    write_prediction,
)
from pyphase.results import read_prediction
from pyphase.schema import PREDICTION_COLUMNS

SMALL = NQMParams(d=32, h_max=50.0, alpha=2.0, sigma2=0.1, init_loss=4.0, loss_floor=1.5, init_power=1.0,
                  provenance={"source": "test"})


# --------------------------------------------------------------------------- parsing
def test_lr_grid_is_log_spaced_and_inclusive():
    lrs = parse_lr_grid("1e-4:1e-1:13")
    assert len(lrs) == 13 and lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-1)
    np.testing.assert_allclose(np.diff(np.log10(lrs)), 0.25)
    assert parse_lr_grid("0.01,0.001, 0.1") == [0.001, 0.01, 0.1]
    assert parse_lr_grid("0.01:0.01:1") == [0.01]


@pytest.mark.parametrize("text", ["1e-1:1e-4:0", "1e-1:1e-4:5", "1e-4:1e-1", "0:1e-1:5", "-1e-3:1e-1:3",
                                  "1e-4:1e-1:x", "a,b", "0.1,-0.2", "", "1e-3:1e-2:1", "nan:1:3"])
def test_bad_lr_grids_are_user_errors(text):
    with pytest.raises(PyphaseError) as e:
        parse_lr_grid(text)
    assert str(e.value).startswith("--lr")


def test_batches_and_clips_parse_and_reject_bad_values():
    assert parse_batches("256,32,64,32") == [32, 64, 256]
    assert parse_clips(["1.0", "10", "none", "1", "OFF"]) == [1.0, 10.0, None]
    for bad in ("0", "32,-1", "x", ""):
        with pytest.raises(PyphaseError):
            parse_batches(bad)
    for bad in (["-1"], ["0"], ["inf"], ["nan"], ["big"], []):
        with pytest.raises(PyphaseError):
            parse_clips(bad)


def test_optimizer_settings_are_the_trainers_defaults():
    s = OptimizerSettings.trainer_defaults()
    assert (s.betas, s.eps, s.weight_decay, s.momentum, s.warmup_steps, s.schedule) == (
        (0.9, 0.999), 1e-8, 0.01, 0.9, 0, "constant")


def test_given_momentum_and_weight_decay_replace_the_defaults_and_are_checked():
    s = optimizer_settings("sgd", momentum=0.0, weight_decay=0.5)
    assert s == OptimizerSettings((0.9, 0.999), 1e-8, 0.5, 0.0, 0, "constant")
    assert optimizer_settings("adamw", weight_decay=0.0).weight_decay == 0.0
    assert optimizer_settings("sgd") == OptimizerSettings.trainer_defaults()
    for optimizer, kw, message in [
        ("adamw", {"momentum": 0.9}, "--momentum: only sgd has momentum, not --optimizer adamw"),
        ("sgd", {"momentum": 1.0}, "--momentum: must be finite and >= 0.0 and < 1.0, got 1.0"),
        ("sgd", {"momentum": float("nan")}, "--momentum: must be finite and >= 0.0 and < 1.0, got nan"),
        ("sgd", {"weight_decay": -1e-3}, "--weight-decay: must be finite and >= 0.0, got -0.001"),
        ("adamw", {"weight_decay": float("inf")}, "--weight-decay: must be finite and >= 0.0, got inf"),
    ]:
        with pytest.raises(PyphaseError) as e:
            optimizer_settings(optimizer, **kw)
        assert str(e.value) == message
    # the library call checks the settings it is given too, before simulating anything
    bad = OptimizerSettings((0.9, 0.999), 1e-8, 0.01, -0.5, 0, "constant")
    with pytest.raises(PyphaseError, match=r"^momentum: must be finite and >= 0.0 and < 1.0, got -0.5$"):
        predict([1.0], "sgd", [8], [1e-2], 10, 1, SMALL, settings=bad, progress=False)


# --------------------------------------------------------------------------- NQM parameter files
def test_nqm_params_round_trip_exactly(tmp_path):
    p = tmp_path / "cal" / "nqm.json"
    SMALL.save(p)
    back = NQMParams.load(p)
    assert back == SMALL
    assert back.provenance == {"source": "test", "path": str(p)}
    obj = json.loads(p.read_text())
    # a plain parameter set is written as version 1 (no radial keys), readable by version-1 readers
    assert obj["format"] == nqm.FORMAT and obj["version"] == 1
    assert set(obj) == {"format", "version", "provenance", *nqm.FIELDS}


def test_default_is_builtin_unless_a_calibration_is_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(nqm, "DEFAULT_CALIBRATION", tmp_path / "default.json")
    d = NQMParams.default()
    assert d == NQMParams.builtin() and d.source == "built-in"
    assert {k: getattr(d, k) for k in nqm.FIELDS} == nqm.BUILTIN
    SMALL.with_provenance(source="calibration").save(tmp_path / "default.json")
    shipped = NQMParams.default()
    assert shipped == SMALL and shipped.source == "calibration"


def test_init_power_may_be_omitted(tmp_path):
    obj = {k: v for k, v in SMALL.to_dict().items() if k != "init_power"}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(obj))
    assert NQMParams.load(p).init_power == 0.0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"d": 0}, "d must be a positive integer"),
        ({"d": 2.5}, "d must be a positive integer"),
        ({"h_max": -1.0}, "h_max must be > 0"),
        ({"sigma2": float("nan")}, "sigma2 must be a finite number"),
        ({"alpha": "one"}, "alpha must be a finite number"),
        ({"init_loss": 1.0}, "must exceed loss_floor"),
        ({"init_power": 3.0}, "init_power must be in [0, 2]"),
        ({"format": "other"}, "format is 'other'"),
        ({"version": 4}, "version 4 is not supported"),
        ({"provenance": {}}, "provenance"),
        ({"extra": 1}, "unknown key(s) extra"),
    ],
)
def test_malformed_nqm_files_are_one_line_user_errors(tmp_path, change, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({**SMALL.to_dict(), **change}))
    with pytest.raises(PyphaseError) as e:
        NQMParams.load(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_key_unreadable_and_absent_files(tmp_path):
    p = tmp_path / "bad.json"
    obj = SMALL.to_dict()
    del obj["sigma2"]
    p.write_text(json.dumps(obj))
    with pytest.raises(PyphaseError, match="missing sigma2"):
        NQMParams.load(p)
    p.write_text("{not json")
    with pytest.raises(PyphaseError, match="not valid JSON"):
        NQMParams.load(p)
    with pytest.raises(PyphaseError, match="calibration file not found"):
        NQMParams.load(tmp_path / "nope.json")


# --------------------------------------------------------------------------- regime boundaries
def test_regime_boundary_interpolates_in_log_lr():
    lrs = np.array([1e-3, 1e-2, 1e-1, 1.0])
    lr, status = regime_boundary(lrs, np.array([0.1, 0.3, 0.7, 1.0]), 0.5)
    assert status == "crossed" and lr == pytest.approx(10**-1.5)
    assert regime_boundary(lrs, np.array([0.6, 0.7, 0.8, 1.0]), 0.5) == (None, "below grid")
    assert regime_boundary(lrs, np.array([0.1, 0.2, 0.3, 0.4]), 0.5) == (None, "not reached")
    # Non-monotonic: the boundary is the last upward crossing, above which clipping stays frequent.
    lr, status = regime_boundary(lrs, np.array([0.6, 0.2, 0.5, 0.9]), 0.5)
    assert status == "crossed" and lr == pytest.approx(0.1)
    # Falling with LR (frequent clipping at the smallest LRs, as measured in phase2_5): the first
    # downward crossing, below which clipping is frequent; it used to be reported as "not reached".
    lr, status = regime_boundary(lrs, np.array([1.0, 0.7, 0.3, 0.1]), 0.5)
    assert status == "crossed falling" and lr == pytest.approx(10**-1.5)
    lr, status = regime_boundary(lrs, np.array([0.9, 0.4, 0.6, 0.2]), 0.5)
    assert status == "crossed falling" and lr == pytest.approx(10 ** (-3 + 0.8))
    # above it only inside the grid (a hump): no one boundary, and never an LR outside the grid
    assert regime_boundary(lrs, np.array([0.2, 0.6, 0.7, 0.3]), 0.5) == (None, "inside only")


# --------------------------------------------------------------------------- summary of a known table
def _synthetic_table(lr_opt_of_b, batches=(32, 64, 128, 256), seeds=3):
    """Losses exactly quadratic in log10 LR with their minimum at lr_opt_of_b(B); clip frequency
    rising linearly in log10 LR from 0 at 1e-4 to 1 at 1e-1."""
    lrs = np.geomspace(1e-4, 1e-1, 13)
    rows = []
    for b in batches:
        for lr in lrs:
            x = math.log10(lr)
            for s in range(seeds):
                freq = (x + 4) / 3
                rows.append({"clip": 1.0, "optimizer": "adamw", "batch_size": b, "lr": lr, "seed": s,
                             "final_loss": 2.0 + (x - math.log10(lr_opt_of_b(b))) ** 2, "clip_frequency": freq,
                             "grad_norm_before": 2.0, "grad_norm_after": 1.0, "clip_scale": 1 - freq / 2,
                             "effective_lr": lr, "diverged": False, "diverged_step": None})
    return pl.DataFrame(rows, schema_overrides={"diverged_step": pl.Int64}).select(PREDICTION_COLUMNS)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_summary_recovers_a_known_optimum_and_beta(beta):
    s = summarize(_synthetic_table(lambda b: 1e-3 * (b / 32) ** beta), SMALL, n_boot=200)
    (g,) = s["groups"]
    assert g["clip"] == 1.0 and g["optimizer"] == "adamw"
    for r in g["per_batch"]:
        assert r["lr_opt"] == pytest.approx(1e-3 * (r["batch_size"] / 32) ** beta, rel=1e-9)
        assert r["edge"] is None and r["refined"]
        freq = (math.log10(r["lr_opt"]) + 4) / 3
        assert r["clip_frequency_at_opt"] == pytest.approx(freq)
        assert r["lr_transition"] == pytest.approx(10 ** (0.5 * 3 - 4))
        assert r["lr_saturation"] == pytest.approx(10 ** (0.99 * 3 - 4))
    assert g["beta"] == pytest.approx(beta, abs=1e-9)
    assert g["beta_ci95"] == pytest.approx([beta, beta], abs=1e-9)  # noiseless seeds: no spread
    rules = g["rules"]
    lr32 = g["per_batch"][0]["lr_opt"]
    assert rules["linear"]["lr_opt"]["256"] == pytest.approx(8 * lr32)
    assert rules["square_root"]["lr_opt"]["256"] == pytest.approx(math.sqrt(8) * lr32)
    bn = SMALL.describe()["b_simple"]
    assert rules["mccandlish"]["b_noise"] == pytest.approx(bn)
    assert rules["mccandlish"]["lr_opt"]["128"] == pytest.approx(lr32 * (1 + bn / 32) / (1 + bn / 128))
    assert s["b_simple"] == pytest.approx(bn) and s["nqm_source"] == "test"


def test_summary_flags_an_optimum_at_the_grid_edge():
    s = summarize(_synthetic_table(lambda b: 1e-5), SMALL, n_boot=50)
    assert all(r["edge"] == "low" and r["lr_opt"] == pytest.approx(1e-4) for r in s["groups"][0]["per_batch"])


def test_beta_on_grid_edges_is_not_a_prediction():
    """Every LR_opt on the low edge: the slope through the grid's edge values (0 here) is not
    reported as β; some on an edge: β is only a bound. The words say which way to widen --lr."""
    s = summarize(_synthetic_table(lambda b: 1e-5), SMALL, n_boot=50)
    (g,) = s["groups"]
    # JSON null, as the words say: the grid's slope (0 here) is in the note, not in "beta"
    assert g["beta_status"] == "not_predicted" and g["beta"] is None and g["beta_ci95"] is None
    assert "the slope through those grid values, 0.000" in g["beta_note"]
    assert "every batch size's LR_opt in the fit is on a grid edge" in g["beta_note"] and "widen --lr below 0.0001" in g["beta_note"]
    text = format_summary(s)
    assert "clip = 1 (adamw): ⚠ β not predicted" in text and "β = 0.000" not in text
    part = summarize(_synthetic_table(lambda b: 1e-5 if b == 256 else 1e-3), SMALL, n_boot=50)
    (g,) = part["groups"]
    assert g["beta_status"] == "bounded" and "1 of 4 batch sizes" in g["beta_note"] and "B = 256" in g["beta_note"]
    assert "β = " in format_summary(part) and "⚠ β only bounded" in format_summary(part)
    high = summarize(_synthetic_table(lambda b: 1.0), SMALL, n_boot=50)
    assert "widen --lr above 0.1" in high["groups"][0]["beta_note"]
    inner = summarize(_synthetic_table(lambda b: 1e-3), SMALL, n_boot=50)
    assert inner["groups"][0]["beta_status"] == "predicted" and inner["groups"][0]["beta_note"] is None


def test_a_flat_batch_size_is_left_out_and_widens_nothing():
    """B = 256's simulated loss is the same at every LR: edge "flat", no LR_opt, left out of β (said
    in the note), and no reason to widen the grid on either side or zoom in around it."""
    table = _synthetic_table(lambda b: 1e-3 * (b / 32) ** 0.5).with_columns(
        pl.when(pl.col("batch_size") == 256).then(3.0).otherwise(pl.col("final_loss")).alias("final_loss"))
    s = summarize(table, SMALL, n_boot=50)
    (g,) = s["groups"]
    flat = g["per_batch"][-1]
    assert flat["batch_size"] == 256 and flat["edge"] == "flat" and math.isnan(flat["lr_opt"])
    assert g["beta_status"] == "predicted" and g["beta"] == pytest.approx(0.5, rel=1e-9)
    assert g["beta_note"] == "B = 256 left out of the fit: the same loss at every LR (flat), so no optimum is located"
    assert "⚠ B = 256 left out of the fit" in format_summary(s)
    lrs = list(np.geomspace(1e-4, 1e-1, 13))
    assert edge_extension(grid_optima(table), lrs) == []
    assert zoom_points([o for o in grid_optima(table) if o.batch_size == 256], lrs) == []


def test_one_lr_per_batch_size_predicts_no_beta_and_says_why():
    table = _synthetic_table(lambda b: 1e-3, batches=(32, 256)).filter(pl.col("lr") == pl.col("lr").min())
    (g,) = summarize(table, SMALL, n_boot=50)["groups"]
    assert g["beta"] is None and g["beta_status"] == "not_predicted"
    assert g["beta_note"] == ("β not predicted: β needs LR_opt at two or more batch sizes, and no batch size has "
                              "one (B=32, 256: one LR tested, and a single LR cannot locate an optimum)")


def test_edge_extension_adds_a_decade_at_the_grid_spacing_on_the_edge_side():
    lrs = list(np.geomspace(1e-4, 1e-1, 13))
    low = edge_extension(grid_optima(_synthetic_table(lambda b: 1e-5)), lrs)
    assert low == pytest.approx([10**-5, 10**-4.75, 10**-4.5, 10**-4.25], rel=1e-12)
    high = edge_extension(grid_optima(_synthetic_table(lambda b: 1.0)), lrs)
    assert high == pytest.approx([10**-0.75, 10**-0.5, 10**-0.25, 1.0], rel=1e-12)
    assert edge_extension(grid_optima(_synthetic_table(lambda b: 1e-3)), lrs) == []
    mixed = edge_extension(grid_optima(_synthetic_table(lambda b: 1e-5 if b == 32 else 1.0)), lrs)
    assert len(mixed) == 8 and min(mixed) == pytest.approx(1e-5) and max(mixed) == pytest.approx(1.0)


def test_widened_grid_equals_one_simulation_of_the_whole_grid():
    """LR_opt on the high edge of a three-point grid: predict widens it until the optima are
    interior, and the result (table, curves, summary) is exactly that of simulating the widened
    grid at once; without extend_edges the grid is simulated as given."""
    kw = {"steps": 300, "seeds": 2, "params": SMALL, "progress": False, "n_boot": 20}
    lrs = [1e-3, 10**-2.75, 10**-2.5]
    narrow = predict([1.0, None], "adamw", [8, 32], lrs, **kw)
    assert all(r["edge"] == "high" for g in narrow.summary["groups"] for r in g["per_batch"])
    assert narrow.summary["lrs"] == lrs and narrow.summary["lr_grid_extensions"] == []
    wide = predict([1.0, None], "adamw", [8, 32], lrs, extend_edges=3, **kw)
    ext = wide.summary["lr_grid_extensions"]
    assert 1 <= len(ext) <= 3 and all(e["high"] == 4 and e["low"] == 0 for e in ext)
    assert wide.summary["lr_grid_requested"] == lrs and len(wide.summary["lrs"]) == 3 + 4 * len(ext)
    assert all(r["edge"] is None for g in wide.summary["groups"] for r in g["per_batch"])
    assert all(g["beta_status"] == "predicted" for g in wide.summary["groups"])
    once = predict([1.0, None], "adamw", [8, 32], wide.summary["lrs"], **kw)
    assert wide.table.equals(once.table) and wide.curves.equals(once.curves)
    assert wide.summary["groups"] == once.summary["groups"]
    assert wide.table.filter(pl.col("lr").is_in(lrs)).equals(narrow.table)
    assert "widened from 0.001..0.00316 because LR_opt sat on its high edge" in format_summary(wide.summary)
    with pytest.raises(PyphaseError):
        predict([1.0], "adamw", [8], lrs, extend_edges=-1, **kw)
    # then two halvings of the spacing around the optima: again one simulation of the final grid
    fine = predict([1.0, None], "adamw", [8, 32], lrs, extend_edges=3, zoom=2, **kw)
    zooms = [e for e in fine.summary["lr_grid_extensions"] if e["kind"] == "zoom"]
    assert len(zooms) == 2 and all(e["low"] == 0 and e["high"] == 0 and e["added"] for e in zooms)
    once = predict([1.0, None], "adamw", [8, 32], fine.summary["lrs"], **kw)
    assert fine.table.equals(once.table) and fine.summary["groups"] == once.summary["groups"]
    grid = np.log10(fine.summary["lrs"])
    for g in fine.summary["groups"]:
        for r in g["per_batch"]:  # a quarter of the original spacing on both sides of each grid minimum
            i = int(np.flatnonzero(np.isclose(grid, math.log10(r["lr_opt_grid"]), rtol=0, atol=1e-12))[0])
            assert grid[i] - grid[i - 1] == pytest.approx(0.0625) and grid[i + 1] - grid[i] == pytest.approx(0.0625)
    assert "LRs added around the optima (2 halvings of the spacing)" in format_summary(fine.summary)


def test_zoom_points_are_the_log_midpoints_around_each_interior_minimum():
    lrs = list(np.geomspace(1e-4, 1e-1, 13))
    table = _synthetic_table(lambda b: 1e-3 if b <= 64 else 10**-2.5)
    assert zoom_points(grid_optima(table), lrs) == pytest.approx([10**-3.125, 10**-2.875, 10**-2.625, 10**-2.375], rel=1e-12)
    assert zoom_points(grid_optima(_synthetic_table(lambda b: 1e-5)), lrs) == []  # edge minima are widened, not zoomed


# --------------------------------------------------------------------------- a real (small) prediction
@pytest.fixture(scope="module")
def small_prediction():
    return predict([1.0, None], "adamw", [8, 32], [1e-3, 1e-2, 1e-1], steps=300, seeds=3, params=SMALL,
                   progress=False, n_boot=100)


def test_prediction_table_has_exactly_the_schema_and_one_row_per_trajectory(small_prediction):
    t = small_prediction.table
    assert t.columns == PREDICTION_COLUMNS
    assert t.height == 2 * 2 * 3 * 3
    assert t.filter(pl.col("clip").is_null())["clip_frequency"].max() == 0.0
    clipped = t.filter(pl.col("clip") == 1.0)
    assert (clipped["grad_norm_after"] <= 1.0).all()
    assert t["diverged_step"].null_count() == t.height - t["diverged"].sum()
    s = small_prediction.summary
    assert [g["label"] for g in s["groups"]] == ["none", "1"]
    for g in s["groups"]:
        assert [r["batch_size"] for r in g["per_batch"]] == [8, 32]
        assert all(1e-3 <= r["lr_opt"] <= 1e-1 for r in g["per_batch"])
        assert g["beta"] is not None


def test_prediction_is_deterministic():
    kw = {"steps": 200, "seeds": 2, "params": SMALL, "progress": False, "n_boot": 20}
    a = predict([0.5], "sgd", [4, 16], [1e-3, 1e-2], **kw)
    b = predict([0.5], "sgd", [4, 16], [1e-3, 1e-2], **kw)
    assert a.table.equals(b.table)


def test_outputs_are_written_and_readable_by_compare(small_prediction, tmp_path):
    paths = write_prediction(small_prediction, tmp_path / "pred")
    assert pl.read_parquet(paths["trajectories"]).equals(small_prediction.table)
    curves = pl.read_parquet(paths["curves"])
    assert curves.height == small_prediction.table.height * curves["step"].n_unique()
    summary = json.loads(paths["summary"].read_text())
    assert summary["files"]["trajectories"] == "trajectories.parquet"
    for label in ("1", "none"):
        png = tmp_path / "pred" / f"regime_map_clip{label}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = read_prediction(tmp_path / "pred")
    assert back.trajectories.equals(small_prediction.table)
    assert back.meta["b_simple"] == pytest.approx(SMALL.describe()["b_simple"])


# --------------------------------------------------------------------------- writing all or nothing
def _folder_bytes(folder):
    """Every file in `folder` (temporaries included) by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def other_prediction():
    """Another grid than `small_prediction`'s: other clip, batch sizes, LRs, steps and seeds."""
    return predict([10.0], "adamw", [4, 16], [1e-3, 1e-2], steps=100, seeds=2, params=SMALL, progress=False, n_boot=20)


def _interrupt_at(stage, monkeypatch):
    """Make one step of write_prediction raise KeyboardInterrupt (as Ctrl-C there would), after it
    began writing its file where it writes one."""
    import pyphase.predict as P

    if stage == "curves":  # the second Parquet table, half written
        real = pl.DataFrame.write_parquet
        calls = []

        def write_parquet(self, path, *a, **k):
            calls.append(path)
            if len(calls) == 2:
                Path(path).write_bytes(b"PAR1 half")
                raise KeyboardInterrupt
            return real(self, path, *a, **k)

        monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)
    elif stage == "map":  # a regime map, half written
        def plot(pred, group, path, **k):
            Path(path).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt

        monkeypatch.setattr(P, "plot_regime_map", plot)
    elif stage == "summary":  # prediction.json
        monkeypatch.setattr(P, "to_json", lambda obj: (_ for _ in ()).throw(KeyboardInterrupt))
    elif stage == "sync":  # every file written, the last one being synced: nothing renamed yet
        real_fsync = P._fsync
        synced = []

        def fsync(path):
            synced.append(path)
            if path.name.startswith(".prediction.json"):
                raise KeyboardInterrupt
            real_fsync(path)

        monkeypatch.setattr(P, "_fsync", fsync)


STAGES = ["curves", "map", "summary", "sync"]


@pytest.mark.parametrize("stage", STAGES)
def test_an_interrupted_write_leaves_the_earlier_prediction_byte_identical(small_prediction, other_prediction,
                                                                           tmp_path, monkeypatch, stage):
    """Ctrl-C anywhere before the renames: the earlier prediction's files are as they were, byte
    for byte, and no temporary file is left (the old writer had replaced trajectories.parquet first)."""
    out = tmp_path / "pred"
    write_prediction(small_prediction, out, announce=False)
    before = _folder_bytes(out)
    summary = dict(other_prediction.summary)
    _interrupt_at(stage, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_prediction(other_prediction, out)
    assert _folder_bytes(out) == before
    assert other_prediction.summary == summary  # not marked as written
    back = read_prediction(out)
    assert back.trajectories.equals(small_prediction.table)


@pytest.mark.parametrize("stage", STAGES)
def test_a_fresh_folder_interrupted_midway_holds_no_partial_output(small_prediction, tmp_path, monkeypatch, stage):
    """Into a folder that did not exist: nothing is left, not even the folders the write made."""
    _interrupt_at(stage, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_prediction(small_prediction, tmp_path / "new" / "pred")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_is_one_line_and_keeps_the_earlier_prediction(small_prediction, other_prediction, tmp_path,
                                                                     monkeypatch):
    import pyphase.predict as P

    out = tmp_path / "pred"
    write_prediction(small_prediction, out, announce=False)
    before = _folder_bytes(out)

    def full_disk(pred, group, path, **k):
        Path(path).write_bytes(b"\x89PNG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(P, "plot_regime_map", full_disk)
    with pytest.raises(PyphaseError) as e:
        write_prediction(other_prediction, out)
    assert str(e.value) == (f"--out {out}: cannot write the prediction ([Errno 28] No space left on device); "
                            "an earlier prediction there is unchanged")
    assert _folder_bytes(out) == before


@pytest.fixture()
def sigint_handler():
    """SIGINT set to the given handler for one test, then put back: Python's own Ctrl-C handler, as in a
    terminal, by default (a test run started in the background inherits SIGINT ignored)."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    yield lambda handler=signal.default_int_handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_the_renames_waits_until_the_new_prediction_is_whole(small_prediction, other_prediction,
                                                                          tmp_path, monkeypatch, sigint_handler):
    """SIGINT after the first rename: the renames and the removal of the earlier prediction's
    stale regime maps finish, then KeyboardInterrupt; the folder holds the new prediction whole."""
    import signal

    import pyphase.predict as P

    sigint_handler()
    out = tmp_path / "pred"
    write_prediction(small_prediction, out, announce=False)
    real = P._replace_together

    def replace_together(folder, staged, done):
        first = dict(list(staged.items())[:1])
        real(folder, first, done)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C now: trajectories.parquet is the new one
        real(folder, {k: v for k, v in staged.items() if k not in first}, done)

    monkeypatch.setattr(P, "_replace_together", replace_together)
    with pytest.raises(KeyboardInterrupt):
        write_prediction(dataclasses.replace(other_prediction), out, announce=False)
    assert sorted(p.name for p in out.iterdir()) == ["curves.parquet", "prediction.json", "regime_map_clip10.png",
                                                     "trajectories.parquet"]
    assert read_prediction(out).trajectories.equals(other_prediction.table)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_an_ignored_sigint_stays_ignored_while_a_prediction_is_written(small_prediction, tmp_path, monkeypatch,
                                                                      sigint_handler):
    """The write's Ctrl-C guard replaces only Python's own handler: with SIGINT ignored (a background
    job) a SIGINT during the renames is still ignored, and the write completes."""
    import signal

    import pyphase.predict as P

    sigint_handler(signal.SIG_IGN)
    real = P._replace_together
    seen = []

    def replace_together(folder, staged, done):
        seen.append(signal.getsignal(signal.SIGINT))
        signal.raise_signal(signal.SIGINT)
        real(folder, staged, done)

    monkeypatch.setattr(P, "_replace_together", replace_together)
    paths = write_prediction(dataclasses.replace(small_prediction), tmp_path / "pred", announce=False)
    assert seen == [signal.SIG_IGN] and read_prediction(paths["summary"].parent).trajectories.equals(small_prediction.table)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_write_removes_what_a_killed_write_left_and_nothing_else(small_prediction, tmp_path, staging_child):
    """A predict SIGKILLed after staging left its hidden temporaries (here with a regime map of another
    clip value): the next write into the folder removes them, and those in the older ".<name>.tmp.<pid>"
    form, but not the temporaries of a predict still running, nor any other file."""
    out = tmp_path / "pred"
    out.mkdir()
    dead = staging_child(out, ["trajectories.parquet", "regime_map_clip7.png", "prediction.json"])
    old_form = f".curves.parquet.tmp.{dead}"
    (out / old_form).write_bytes(b"x")
    stale = {p.name for p in out.iterdir()}
    staging_child(out, ["trajectories.parquet", "regime_map_clip1.png"], stay=True)
    for name in (".mine.png.tmp.{dead}", ".regime_map.png.tmp.{dead}", ".prediction.json.tmp.otherhost.{dead}",
                 ".hidden"):
        (out / name.format(dead=dead)).write_bytes(b"keep")
    kept = {p.name for p in out.iterdir()} - stale
    paths = write_prediction(dataclasses.replace(small_prediction), out, announce=False)
    assert {p.name for p in out.iterdir()} == kept | {p.name for p in paths.values()}
    assert read_prediction(out).trajectories.equals(small_prediction.table)


def test_the_summary_records_the_tables_sha256(small_prediction, tmp_path):
    import hashlib

    paths = write_prediction(dataclasses.replace(small_prediction), tmp_path / "pred")
    summary = json.loads(paths["summary"].read_text())
    assert summary["trajectories_sha256"] == hashlib.sha256(paths["trajectories"].read_bytes()).hexdigest()


def test_predict_rejects_bad_arguments():
    for kw in ({"clips": []}, {"optimizer": "adam"}, {"batches": [0]}, {"lrs": [-1.0]}, {"steps": 0},
               {"seeds": 0}):
        args = {"clips": [1.0], "optimizer": "adamw", "batches": [8], "lrs": [0.01], "steps": 10, "seeds": 1, "params": SMALL,
                    "progress": False}
        args.update(kw)
        with pytest.raises(PyphaseError):
            predict(**args)


# --------------------------------------------------------------------------- chunked simulation (the bar moves between calls)
def test_seed_chunks_cover_every_seed_and_never_fall_below_two_per_thread():
    from pyphase.predict import seed_chunks

    for seeds, n_lrs, steps, threads in [(8, 13, 5000, 2), (8, 13, 100_000, 2), (10, 13, 100_000, 2), (3, 13, 10**6, 2),
                                         (10_000, 7, 100, 2), (8, 13, 5000, 16), (1, 1, 1, 1)]:
        chunks = seed_chunks(seeds, n_lrs, steps, threads)
        assert [s for c in chunks for s in c] == list(range(seeds))
        assert all(len(c) >= min(seeds, 2 * threads) for c in chunks)
    assert seed_chunks(8, 13, 100_000, 2) == [range(0, 4), range(4, 8)]  # long runs: the bar moves after half the seeds
    assert len(seed_chunks(8, 4, 100, 2)) == 1  # small work: one call, as before
    assert len(seed_chunks(10_000, 7, 100, 2)) < 100  # many cheap seeds: not thousands of tiny calls


def test_a_simulation_split_into_seed_chunks_equals_one_call(monkeypatch):
    import pyphase.predict as P

    kw = {"steps": 150, "seeds": 5, "params": SMALL, "progress": False, "n_boot": 10, "threads": 1}
    whole = predict([1.0], "adamw", [4, 16], [1e-3, 1e-2, 1e-1], **kw)
    monkeypatch.setattr(P, "CHUNK_WORK_PER_THREAD", 1)
    assert len(P.seed_chunks(5, 3, 150, 1)) == 2
    calls = []
    real = P._core_simulate
    monkeypatch.setattr(P, "_core_simulate", lambda *a: calls.append(a[5]) or real(*a))
    split = predict([1.0], "adamw", [4, 16], [1e-3, 1e-2, 1e-1], **kw)
    assert calls == [[0, 1], [2, 3, 4]] * 2
    assert split.table.equals(whole.table) and split.curves.equals(whole.curves)


def test_settings_print_as_given_and_numpy_numbers_pass_the_checks() -> None:
    import numpy as np

    from pyphase.predict import _settings_words, optimizer_settings

    # repr, not :g: 0.9999999999999999 is not "1", a value just off the default is not the default
    assert _settings_words({"optimizer": "sgd", "optimizer_settings": {"momentum": 0.9999999999999999,
                                                                       "weight_decay": 0.0100000001}}) == \
        " (momentum 0.9999999999999999, weight decay 0.0100000001)"
    # a library caller's numpy floats are numbers like any other
    s = optimizer_settings("sgd", np.float32(0.5), np.float64(0.0))
    assert s.momentum == 0.5 and s.weight_decay == 0.0 and s.problems() == {}
    import dataclasses

    assert set(dataclasses.replace(s, momentum=np.float64(1.0)).problems()) == {"momentum"}


def test_format_summary_says_b_simple_is_not_defined_where_the_json_holds_null():
    """A prediction.json whose B_simple (or |G(θ0)|) was infinite holds null; formatting it raised
    "unsupported format string passed to NoneType.__format__" after every file was written."""
    import json as _json

    from pyphase.predict import format_summary, predict

    pred = predict([1.0], batches=[8, 32], lrs=[1e-3, 1e-2], steps=20, seeds=1, params=SMALL, progress=False)
    summary = _json.loads(_json.dumps(pred.summary))
    summary.update(b_simple=None, init_grad_norm=None)
    text = format_summary(summary)
    assert "|G(θ0)| = not defined, B_simple = not defined" in text.splitlines()[0]


def test_predict_refuses_a_degenerate_start_before_simulating():
    """Parameters given in-process are checked as a file's are (NQMParams.check), before any simulation."""
    from pyphase.predict import predict

    bad = NQMParams(**{**{k: getattr(SMALL, k) for k in nqm.FIELDS}, "h_max": 1e308})
    with pytest.raises(PyphaseError, match=r"^NQM parameters: the start θ\(0\) is degenerate: \|G\(θ0\)\| = 0"):
        predict([1.0], batches=[8], lrs=[1e-3], steps=5, seeds=1, params=bad, progress=False)


@pytest.mark.parametrize("change,message", [
    ({"d": 10**30}, "d must be in 1..=1048576, got an integer of 31 digits (the simulator's limit)"),
    ({"d": (1 << 20) + 1}, "d must be in 1..=1048576, got 1,048,577 (the simulator's limit)"),
    ({"alpha": 10**400}, "alpha must be a finite number, got an integer of 401 digits"),
    ({"init_loss": -(10**400)}, "init_loss must be a finite number, got an integer of 401 digits"),
])
def test_nqm_fields_are_range_checked_before_any_conversion(tmp_path, change, message):
    """Python's ints are unbounded: d past int64 overflowed the simulator's binding, and a number past
    float64 overflowed math.isfinite; both are one-line errors naming the file now."""
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({**SMALL.to_dict(), **change}))
    with pytest.raises(PyphaseError) as e:
        NQMParams.load(p)
    assert str(e.value) == f"calibration file {p}: {message}"
