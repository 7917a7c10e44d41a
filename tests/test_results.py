"""Reading results: both layouts, root precedence, validation errors (one line naming the file),
SQL over summaries and steps, output formats, corpus entropies and prediction files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_analysis import as_prediction, bowl_summaries

from pyphase import results as res
from pyphase.errors import PyphaseError
from pyphase.schema import SEED_SUMMARY_COLUMNS, STEP_COLUMNS, SUMMARY_COLUMNS

# Seed 000's Phase 3a "Full Results Table" (one seed per config, after == before). Its last row is
# short one field in the seed (avg_clip_frequency missing); the text table beside it says 1.0 there.
SEED_3A_CSV = """batch_size,lr,gradient_clip,final_train_loss,final_val_loss,train_loss_std,avg_grad_norm_before,avg_grad_norm_after,avg_clip_frequency,converged,num_steps
128,0.01,1.0,4.060,4.064,0.0033,3.23,3.23,1.0,True,5000
128,0.02,1.0,4.068,4.062,0.0030,3.39,3.39,1.0,True,5000
128,0.03,1.0,3.879,3.879,0.0036,4.15,4.15,1.0,True,5000
128,0.05,1.0,3.354,3.321,0.0099,1.57,1.57,1.0,True,5000
128,0.10,1.0,3.791,3.739,0.0078,7.22,7.22,1.0,True,5000
256,0.01,1.0,4.294,4.304,0.0012,4.30,4.30,1.0,True,5000
256,0.02,1.0,4.022,4.041,0.0020,4.81,4.81,1.0,True,5000
256,0.03,1.0,4.215,4.234,0.0017,4.56,4.56,1.0,True,5000
256,0.05,1.0,3.468,3.506,0.0056,2.18,2.18,1.0,True,5000
256,0.10,1.0,3.482,3.569,0.0161,1.54,1.54,1.0,False,5000
"""
SEED_3A_LAST_ROW_VERBATIM = "256,0.10,1.0,3.482,3.569,0.0161,1.54,1.54,False,5000"


def write_runs(root: Path, summaries: pl.DataFrame, *, steps_every: int = 100) -> None:
    """Write summaries in the trainer's run-folder layout, with synthetic step metrics."""
    for row in summaries.iter_rows(named=True):
        d = root / row["experiment"] / row["run_id"]
        d.mkdir(parents=True)
        pl.DataFrame([row], schema=summaries.schema).write_parquet(d / res.SUMMARY_FILE)
        steps = np.arange(0, row["num_steps"] + 1, steps_every)
        train = row["final_train_loss"] + 2.0 * np.exp(-steps / (row["num_steps"] / 5))
        pl.DataFrame(
            {
                "run_id": row["run_id"],
                "step": steps,
                "lr": row["lr"],
                "train_loss": train,
                "grad_norm_before": row["avg_grad_norm_before"],
                "grad_norm_after": row["avg_grad_norm_after"],
                "clipped": True,
                "val_loss": [
                    t + 0.02 if s % (4 * steps_every) == 0 else None for s, t in zip(steps, train, strict=True)
                ],
                "weight_norm": [30.0 if s % (4 * steps_every) == 0 else None for s in steps],
            },
            schema_overrides={"val_loss": pl.Float64, "weight_norm": pl.Float64},
        ).select(STEP_COLUMNS).write_parquet(d / res.STEPS_FILE)


def write_committed(root: Path, experiment: str, csv_text: str, provenance: dict | None = None) -> Path:
    d = root / experiment
    d.mkdir(parents=True)
    (d / res.COMMITTED_SUMMARY_FILE).write_text(csv_text)
    if provenance is not None:
        (d / res.PROVENANCE_FILE).write_text(json.dumps(provenance))
    return d


@pytest.fixture()
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    write_runs(root, bowl_summaries(batches=(32, 64, 128), lrs=(1e-4, 1e-3, 1e-2), seeds=2, experiment="exp_a"))
    return root


# --------------------------------------------------------------------------- discovery and scan
def test_scan_reads_every_finished_run_folder(runs_root: Path) -> None:
    rs = res.scan(runs_root, "exp_a")
    df = rs.summaries.collect()
    assert df.height == 3 * 3 * 2
    assert df.columns[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert set(df["experiment"]) == {"exp_a"}
    steps = rs.steps.collect()
    assert steps["run_id"].n_unique() == 18 and set(steps["experiment"]) == {"exp_a"}


def test_unfinished_runs_are_counted_but_not_read(runs_root: Path) -> None:
    unfinished = runs_root / "exp_a" / "b32-unfinished"
    unfinished.mkdir()
    (unfinished / res.CHECKPOINT_FILE).write_bytes(b"x")
    (runs_root / "exp_a" / "_packs").mkdir()  # the sweep's checkpoint folder is not a run
    (runs_root / "exp_a" / "_packs" / "b32_k3_abc.ckpt").write_bytes(b"x")
    src = res.find_experiments(runs_root)[0]
    assert (src.runs, src.finished, src.packs_in_progress) == (19, 18, 1)
    assert res.scan(runs_root, "exp_a").summaries.collect().height == 18


def test_committed_csv_layout_reads_the_seed_table(tmp_path: Path) -> None:
    write_committed(tmp_path, "phase3a", SEED_3A_CSV)
    df = res.scan(tmp_path, "phase3a").summaries.collect()
    assert df.height == 10
    assert df["converged"].to_list() == [True] * 9 + [False]
    assert df.schema["gradient_clip"] == pl.Float64 and df.schema["batch_size"] == pl.Int64
    assert df["run_id"].to_list()[0] == "phase3a-0" and df["seed"].null_count() == 10


def test_seed_table_short_row_is_a_one_line_error(tmp_path: Path) -> None:
    lines = SEED_3A_CSV.splitlines()
    write_committed(tmp_path, "verbatim", "\n".join(lines[:-1] + [SEED_3A_LAST_ROW_VERBATIM]) + "\n")
    with pytest.raises(PyphaseError, match=r"verbatim/summary.csv: unreadable CSV \(could not parse `False`") as e:
        res.scan(tmp_path, "verbatim")
    assert "\n" not in str(e.value)


def test_committed_csv_none_means_clipping_off(tmp_path: Path) -> None:
    text = ",".join(SEED_SUMMARY_COLUMNS) + "\n32,0.001,None,4.4,4.44,0.01,1.0,1.0,0.0,True,100\n"
    write_committed(tmp_path, "p3b", text)
    assert res.scan(tmp_path, "p3b").summaries.collect()["gradient_clip"].to_list() == [None]


def test_first_root_wins_for_an_experiment_in_both(tmp_path: Path, runs_root: Path) -> None:
    write_committed(tmp_path / "results", "exp_a", SEED_3A_CSV)
    assert res.scan([runs_root, tmp_path / "results"], "exp_a").summaries.collect().height == 18
    assert res.scan([tmp_path / "results", runs_root], "exp_a").summaries.collect().height == 10
    table = res.experiments_table(res.find_experiments([runs_root, tmp_path / "results"]))
    assert table["layout"].to_list() == ["runs", "committed"]


def test_roots_from_options_reads_only_the_folders_given() -> None:
    """A folder given with --runs or --results is authoritative: the defaults are read only when
    neither is given (runs/ first); with both, --runs first."""
    assert res.roots_from_options() == [Path("runs"), Path("results")]
    assert res.roots_from_options(results=Path("r")) == [Path("r")]
    assert res.roots_from_options(runs="x") == [Path("x")]
    assert res.roots_from_options(Path("x"), Path("r")) == [Path("x"), Path("r")]
    assert res.roots_from_options(results=Path("results")) == [Path("results")]


def test_describe_source_names_the_folder(tmp_path: Path, runs_root: Path) -> None:
    src = res.scan(runs_root, "exp_a").source("exp_a")
    assert res.describe_source(src) == f"read from {runs_root}/exp_a (runs layout, 18 finished runs)"
    assert res.describe_source(src, code=True) == f"read from `{runs_root}/exp_a` (runs layout, 18 finished runs)"


def test_scan_all_experiments(tmp_path: Path, runs_root: Path) -> None:
    write_committed(tmp_path / "results", "phase3a", SEED_3A_CSV)
    df = res.scan([runs_root, tmp_path / "results"]).summaries.collect()
    assert df.group_by("experiment").len().sort("experiment").rows() == [("exp_a", 18), ("phase3a", 10)]


def test_experiment_with_only_a_pack_in_progress_is_listed(tmp_path: Path) -> None:
    (tmp_path / "exp" / "_packs").mkdir(parents=True)
    (tmp_path / "exp" / "_packs" / "p.ckpt").write_bytes(b"x")
    src = res.find_experiments(tmp_path)[0]
    assert (src.experiment, src.runs, src.finished, src.packs_in_progress) == ("exp", 0, 0, 1)
    with pytest.raises(PyphaseError, match="has no finished runs"):
        res.scan(tmp_path, "exp")


def test_plots_folder_is_not_an_experiment(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a_lr_opt.png").write_bytes(b"png")
    (tmp_path / "exp" / "plots").mkdir(parents=True)
    assert res.find_experiments(tmp_path) == []


# --------------------------------------------------------------------------- errors: one line naming the file
def test_missing_experiment_names_the_roots(tmp_path: Path) -> None:
    with pytest.raises(PyphaseError, match=r"^no results for experiment 'x' under .*runs/ or .*results/$"):
        res.scan([tmp_path / "runs", tmp_path / "results"], "x")


def test_missing_column_names_file_and_column(runs_root: Path) -> None:
    path = next((runs_root / "exp_a").iterdir()) / res.SUMMARY_FILE
    pl.read_parquet(path).drop("lr").write_parquet(path)
    with pytest.raises(PyphaseError) as e:
        res.scan(runs_root, "exp_a")
    assert str(e.value) == f"{path}: missing column 'lr'"


def test_corrupt_parquet_is_one_line(runs_root: Path) -> None:
    path = next((runs_root / "exp_a").iterdir()) / res.SUMMARY_FILE
    path.write_bytes(b"not a parquet file")
    with pytest.raises(PyphaseError, match=r"summary.parquet: unreadable Parquet") as e:
        res.scan(runs_root, "exp_a")
    assert "\n" not in str(e.value)


def test_steps_missing_column(runs_root: Path) -> None:
    path = next((runs_root / "exp_a").iterdir()) / res.STEPS_FILE
    pl.read_parquet(path).drop("train_loss").write_parquet(path)
    with pytest.raises(PyphaseError, match=r"steps.parquet: missing column 'train_loss'"):
        res.scan(runs_root, "exp_a")


def test_bad_csv_value_names_the_file(tmp_path: Path) -> None:
    write_committed(tmp_path, "bad", SEED_3A_CSV.replace("128,0.01,1.0", "128,abc,1.0", 1))
    with pytest.raises(PyphaseError, match=r"bad/summary.csv: unreadable CSV"):
        res.scan(tmp_path, "bad")


def test_committed_csv_missing_column(tmp_path: Path) -> None:
    write_committed(tmp_path, "short", "batch_size,lr\n32,0.1\n")
    with pytest.raises(PyphaseError, match=r"short/summary.csv: missing column 'gradient_clip'"):
        res.scan(tmp_path, "short")


def test_experiment_without_finished_runs(tmp_path: Path) -> None:
    d = tmp_path / "exp" / "run0"
    d.mkdir(parents=True)
    (d / res.CHECKPOINT_FILE).write_bytes(b"x")
    with pytest.raises(PyphaseError, match=r"experiment 'exp' under .* has no finished runs \(0 of 1\)"):
        res.scan(tmp_path, "exp")


def test_two_row_summary_is_rejected(runs_root: Path) -> None:
    path = next((runs_root / "exp_a").iterdir()) / res.SUMMARY_FILE
    df = pl.read_parquet(path)
    pl.concat([df, df]).write_parquet(path)
    with pytest.raises(PyphaseError, match="expected one row, found 2"):
        res.scan(runs_root, "exp_a")


# --------------------------------------------------------------------------- SQL and formats
def test_sql_query_returns_the_right_rows(runs_root: Path) -> None:
    rs = res.scan(runs_root, "exp_a")
    out = res.query(rs, "SELECT batch_size, lr, seed FROM summaries WHERE lr > 0.005 AND seed = 1 ORDER BY batch_size")
    assert out.rows() == [(32, 0.01, 1), (64, 0.01, 1), (128, 0.01, 1)]


def test_sql_joins_steps_and_summaries(runs_root: Path) -> None:
    rs = res.scan(runs_root, "exp_a")
    sql = (
        "SELECT s.batch_size, COUNT(*) AS n FROM steps t JOIN summaries s ON t.run_id = s.run_id "
        "WHERE t.val_loss IS NOT NULL GROUP BY s.batch_size ORDER BY s.batch_size"
    )
    # 1000 steps logged every 100, val every 400 -> steps 0, 400, 800; 3 LRs x 2 seeds per batch size
    assert res.query(rs, sql).rows() == [(32, 18), (64, 18), (128, 18)]


def test_sql_error_is_one_line(runs_root: Path) -> None:
    with pytest.raises(PyphaseError, match=r"^SQL failed: ") as e:
        res.query(res.scan(runs_root, "exp_a"), "SELECT nope FROM summaries")
    assert "\n" not in str(e.value)


def test_formats_round_trip(runs_root: Path) -> None:
    df = res.show_table(res.scan(runs_root, "exp_a"), "exp_a")
    assert df.columns == SEED_SUMMARY_COLUMNS + ["seed"]
    assert df["batch_size"].is_sorted() and df.height == 18
    import io

    back = pl.read_csv(io.StringIO(res.format_frame(df, "csv")))
    assert back["final_val_loss"].to_list() == df["final_val_loss"].to_list()
    rows = json.loads(res.format_frame(df, "json"))
    assert rows[0]["final_val_loss"] == df["final_val_loss"][0] and len(rows) == 18
    table = res.format_frame(df, "table")
    assert table.count("\n") == 18 + 1 and "final_val_loss" in table
    with pytest.raises(PyphaseError, match="unknown format 'xml'"):
        res.format_frame(df, "xml")


def test_json_output_is_strict() -> None:
    assert json.loads(res.to_json({"a": float("inf"), "b": [float("nan"), 1.0]})) == {"a": None, "b": [None, 1.0]}


# --------------------------------------------------------------------------- corpus entropies
def test_entropies_from_provenance(tmp_path: Path) -> None:
    write_committed(
        tmp_path, "p", SEED_3A_CSV, {"corpus_entropies": {"unigram": 3.3128, "bigram": 2.4526, "vocab_size": 65}}
    )
    ent = res.corpus_entropies(res.scan(tmp_path, "p"), "p")
    assert (ent.unigram, ent.bigram, ent.vocab_size, ent.source) == (3.3128, 2.4526, 65, "provenance.json")


def test_entropies_from_summary_columns_win(tmp_path: Path) -> None:
    lines = SEED_3A_CSV.splitlines()
    text = "\n".join(
        [lines[0] + ",corpus_unigram_entropy,corpus_bigram_entropy,corpus_vocab_size"]
        + [line + ",3.0,2.0,50" for line in lines[1:]]
    )
    write_committed(tmp_path, "p", text, {"corpus_entropies": {"unigram": 9.0, "bigram": 9.0}})
    ent = res.corpus_entropies(res.scan(tmp_path, "p"), "p")
    assert (ent.unigram, ent.bigram, ent.vocab_size, ent.source) == (3.0, 2.0, 50, "summary columns")


def test_entropies_absent_or_malformed(tmp_path: Path) -> None:
    write_committed(tmp_path, "none", SEED_3A_CSV)
    assert res.corpus_entropies(res.scan(tmp_path, "none"), "none") is None
    write_committed(tmp_path, "bad", SEED_3A_CSV, {"corpus_entropies": {"unigram": "x"}})
    with pytest.raises(PyphaseError, match="corpus_entropies needs numeric"):
        res.corpus_entropies(res.scan(tmp_path, "bad"), "bad")
    (tmp_path / "bad" / res.PROVENANCE_FILE).write_text("{oops")
    with pytest.raises(PyphaseError, match="provenance.json: invalid JSON"):
        res.scan(tmp_path, "bad").provenance("bad")


# --------------------------------------------------------------------------- predictions
def test_read_prediction_folder_merges_json(tmp_path: Path) -> None:
    pred = as_prediction(bowl_summaries(seeds=1))
    pred.write_parquet(tmp_path / "trajectories.parquet")
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "other.parquet")  # not a prediction table
    (tmp_path / "summary.json").write_text(json.dumps({"b_noise": 42.0}))
    p = res.read_prediction(tmp_path)
    assert p.trajectories.height == pred.height and p.meta == {"b_noise": 42.0}
    assert res.read_prediction(tmp_path / "trajectories.parquet").meta == {"b_noise": 42.0}


def test_read_prediction_errors(tmp_path: Path) -> None:
    with pytest.raises(PyphaseError, match="no such prediction"):
        res.read_prediction(tmp_path / "nope")
    with pytest.raises(PyphaseError, match="no Parquet file with the prediction columns"):
        res.read_prediction(tmp_path)
    as_prediction(bowl_summaries(seeds=1)).drop("clip_frequency").write_parquet(tmp_path / "t.parquet")
    with pytest.raises(PyphaseError, match=r"t.parquet: missing column 'clip_frequency'"):
        res.read_prediction(tmp_path / "t.parquet")


LAYOUTS = [
    # (files in the folder, refused): a table of another name, or trajectories.parquet beside a JSON
    # predict never writes, are made by hand; predict's own files without prediction.json are what a
    # write stopped before prediction.json leaves
    (("t.parquet",), False),
    (("trajectories.parquet", "summary.json"), False),
    (("t.parquet", "prediction.json"), False),  # a prediction.json that pyphase did not write
    (("trajectories.parquet",), True),
    (("t.parquet", "curves.parquet"), True),
    (("trajectories.parquet", "summary.json", "regime_map_clip1.png"), True),
]


def test_read_prediction_refuses_predict_outputs_without_their_summary(tmp_path: Path) -> None:
    table = as_prediction(bowl_summaries(seeds=1))
    for i, (names, refused) in enumerate(LAYOUTS):
        folder = tmp_path / str(i)
        folder.mkdir()
        for name in names:
            if name.endswith(".parquet"):
                (table if name != "curves.parquet" else table.head(2)).write_parquet(folder / name)
            elif name.endswith(".json"):  # no kind: not a pyphase prediction.json, nothing to hold it to
                (folder / name).write_text(json.dumps({"steps": 1, "batch_sizes": [1]}))
            else:
                (folder / name).write_bytes(b"\x89PNG")
        if refused:
            with pytest.raises(PyphaseError, match=r"looks like an interrupted or mixed `pyphase predict` output") as e:
                res.read_prediction(folder)
            assert str(e.value).startswith(f"{folder}: ") and "\n" not in str(e.value), names
        else:
            assert res.read_prediction(folder).trajectories.height == table.height, names


COMMITTED_PREDICTIONS = sorted(Path(__file__).resolve().parents[1].glob("results/predictions*/*/prediction.json"))


def test_committed_predictions_load_and_a_mixed_copy_of_one_does_not(tmp_path: Path) -> None:
    """Every committed prediction folder has its prediction.json, which describes its table (they
    predate the recorded sha256: the grid is compared); a copy with another one's table is refused."""
    assert len(COMMITTED_PREDICTIONS) == 15
    for summary in COMMITTED_PREDICTIONS:
        p = res.read_prediction(summary.parent)
        assert p.meta["kind"] == "pyphase.prediction" and "trajectories_sha256" not in p.meta
        assert p.trajectories.height == len(p.meta["lrs"]) * len(p.meta["batch_sizes"]) * p.meta["seeds"] * len(
            p.meta["groups"])
    repo_results = COMMITTED_PREDICTIONS[0].parents[2]
    mixed = tmp_path / "phase3a"
    mixed.mkdir()
    for f in (repo_results / "predictions" / "phase3a").iterdir():
        (mixed / f.name).write_bytes(f.read_bytes())
    assert res.read_prediction(mixed).trajectories.height == 80
    # the calibrated, widened prediction of the same experiment: its table in place of this one's
    (mixed / "trajectories.parquet").write_bytes(
        (repo_results / "predictions_calibrated_widened" / "phase3a" / "trajectories.parquet").read_bytes())
    with pytest.raises(PyphaseError) as e:
        res.read_prediction(mixed)
    assert str(e.value) == (
        f"{mixed}: looks like an interrupted or mixed `pyphase predict` output (prediction.json records LRs "
        "[0.01, 0.02, 0.03, 0.05, 0.1], trajectories.parquet holds 22 values 1e-05..0.1); "
        f"run pyphase predict again (--out {mixed})")


# --------------------------------------------------------------------------- export (runs -> committed)
def _export_runs(root: Path) -> pl.DataFrame:
    """Run folders with the awkward values a sweep produces: clipping off (null), a diverged run
    (inf loss, a diverged step), a NaN, and one run that logged every step for 2500 steps."""
    s = bowl_summaries(batches=(32, 64), lrs=(1e-3, 1e-2), seeds=2, experiment="exp_x").with_columns(
        pl.col("corpus_unigram_entropy").fill_null(3.3),
        pl.col("corpus_bigram_entropy").fill_null(2.45),
        pl.col("corpus_vocab_size").fill_null(65),
        pl.lit(4, dtype=pl.Int64).alias("pack_size"),
    )
    s = s.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("gradient_clip")).alias("gradient_clip"),
        pl.when(pl.int_range(pl.len()) == 1).then(float("inf")).otherwise(pl.col("final_val_loss")).alias("final_val_loss"),
        pl.when(pl.int_range(pl.len()) == 1).then(123).otherwise(pl.col("diverged_step")).alias("diverged_step"),
        pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("train_loss_std")).alias("train_loss_std"),
    )
    write_runs(root, s.filter(pl.int_range(pl.len()) > 0))
    write_runs(root, s.head(1).with_columns(pl.lit(2500).alias("num_steps")), steps_every=1)
    for row in s.iter_rows(named=True):
        steps = 2500 if row["run_id"] == s["run_id"][0] else row["num_steps"]
        config = {"experiment": "exp_x", "batch_size": row["batch_size"], "lr": row["lr"], "steps": steps,
                  "model": {"d_model": 128, "block_size": 256}}
        (root / "exp_x" / row["run_id"] / res.CONFIG_FILE).write_text(json.dumps(config))
    return s


def test_export_round_trips_summaries_and_steps(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    out = res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", {"command": ["make it"]})
    assert out == tmp_path / "results" / "exp_x"
    assert res.find_experiments(tmp_path / "results")[0].layout == res.COMMITTED_LAYOUT
    ran, committed = res.scan(tmp_path / "runs", "exp_x"), res.scan(tmp_path / "results", "exp_x")
    assert_frame_equal(ran.summaries.collect().sort("run_id"), committed.summaries.collect().sort("run_id"))
    steps_ran = ran.steps.collect().sort("run_id", "step")
    assert_frame_equal(steps_ran, committed.steps.collect().select(steps_ran.columns).sort("run_id", "step"))
    prov = committed.provenance("exp_x")
    assert prov["files"]["steps"]["rows"] == steps_ran.height == prov["files"]["steps"]["rows_in_runs"]
    assert prov["seeds"] == [0, 1] and prov["runs"] == {"finished": 8, "unfinished": 0, "packs_in_progress": 0}
    assert prov["corpus_entropies"] == {"unigram": 3.3, "bigram": 2.45, "vocab_size": 65}
    assert prov["corpus"] == {"name": "synthetic", "sha256": "0" * 64}
    assert prov["run_config"]["common"]["model"] == {"d_model": 128, "block_size": 256}
    assert prov["run_config"]["varies"] == ["batch_size", "lr", "steps"]
    assert prov["environments"] == [
        {"device": "synthetic", "torch_version": "0", "git_commit": "0" * 40, "seeds": [0, 1], "runs": 8}
    ]
    assert prov["command"] == ["make it"] and prov["kind"] == res.PROVENANCE_KIND


def test_export_names_the_numerics_of_each_environment(tmp_path: Path) -> None:
    """Runs of one experiment trained with different numerics (e.g. one seed with PYPHASE_RESIDUAL=bf16)
    are told apart in the provenance; runs from before the column have none."""
    s = _export_runs(tmp_path / "runs")
    for row in s.iter_rows(named=True):  # seed 1 with the opt-in bf16 stream
        f = tmp_path / "runs" / "exp_x" / row["run_id"] / res.SUMMARY_FILE
        mode = "bf16 autocast" + ("; PYPHASE_RESIDUAL=bf16" if row["seed"] == 1 else "")
        pl.read_parquet(f).with_columns(pl.lit(mode).alias("numerics")).write_parquet(f)
    prov = res.read_provenance(res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", {}))
    assert prov["numerics"] == ["bf16 autocast", "bf16 autocast; PYPHASE_RESIDUAL=bf16"]
    assert [(e["numerics"], e["seeds"], e["runs"]) for e in prov["environments"]] == [
        ("bf16 autocast", [0], 4), ("bf16 autocast; PYPHASE_RESIDUAL=bf16", [1], 4)]
    _export_runs(tmp_path / "runs2")  # summaries without the column
    assert res.read_provenance(res.export_experiment("exp_x", tmp_path / "runs2", tmp_path / "results2", {}))["numerics"] is None


def test_export_thins_steps_past_the_size_limit(tmp_path: Path) -> None:
    s = _export_runs(tmp_path / "runs")
    res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", max_steps_bytes=1)
    committed = pl.read_parquet(tmp_path / "results" / "exp_x" / res.STEPS_FILE)
    long_run = s["run_id"][0]
    kept = committed.filter(pl.col("run_id") == long_run)["step"].to_list()
    # every step to 1000, then every 10th; steps are logged 0..2500 and evaluated every 4th step
    expected = sorted(set(range(1001)) | set(range(1000, 2501, 10)) | set(range(0, 2501, 4)))
    assert kept == expected
    short = committed.filter(pl.col("run_id") != long_run)  # 0..1000 every 100: all kept
    assert short.height == 7 * 11
    prov = res.read_provenance(tmp_path / "results" / "exp_x")
    assert prov["files"]["steps"]["rows"] == committed.height < prov["files"]["steps"]["rows_in_runs"]
    assert prov["files"]["steps"]["sampling"].startswith("thinned")


def test_export_again_keeps_command_and_notes_unless_given(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    runs, dest = tmp_path / "runs", tmp_path / "results"
    res.export_experiment("exp_x", runs, dest, {"command": ["a"], "notes": ["first"], "extra": 1})
    res.export_experiment("exp_x", runs, dest)
    assert {k: res.read_provenance(dest / "exp_x")[k] for k in ("command", "notes", "extra")} == {
        "command": ["a"],
        "notes": ["first"],
        "extra": 1,
    }
    res.export_experiment("exp_x", runs, dest, {"command": ["b"]})
    prov = res.read_provenance(dest / "exp_x")
    assert (prov["command"], prov["notes"]) == (["b"], ["first"])


def test_export_checks_the_corpus_and_records_its_splits(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    text = tmp_path / "corpus.txt"
    sentence = "to be or not to be, that is the question. "
    text.write_text(sentence * 200)
    with pytest.raises(PyphaseError, match=r"corpus.txt: sha256 [0-9a-f]{12}\.\.\. is not the corpus the runs recorded"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", corpus=text)
    from pyphase.data import load_corpus

    corpus = load_corpus(text)
    for d in (tmp_path / "runs" / "exp_x").iterdir():
        f = d / res.SUMMARY_FILE
        pl.read_parquet(f).with_columns(pl.lit(corpus.sha256).alias("corpus_sha256")).write_parquet(f)
    dest = tmp_path / "results"
    res.export_experiment("exp_x", tmp_path / "runs", dest, corpus=text)
    res.export_experiment("exp_x", tmp_path / "runs", dest)  # no --corpus again: split sizes kept
    prov = res.read_provenance(dest / "exp_x")
    assert (prov["corpus"]["train_chars"], prov["corpus"]["valid_chars"]) == (corpus.train.size, corpus.valid.size)
    assert prov["corpus"]["train_chars"] + prov["corpus"]["valid_chars"] == 200 * len(sentence)


def test_export_refuses_unfinished_runs_and_supplied_derived_keys(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    (tmp_path / "runs" / "exp_x" / "b32-unfinished").mkdir()
    (tmp_path / "runs" / "exp_x" / "b32-unfinished" / res.CHECKPOINT_FILE).write_bytes(b"x")
    with pytest.raises(PyphaseError, match=r"'exp_x' under .*runs/ has 1 unfinished runs and 0 packs in progress"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results")
    assert not (tmp_path / "results").exists()
    out = res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", allow_unfinished=True)
    assert res.read_provenance(out)["runs"]["unfinished"] == 1
    with pytest.raises(PyphaseError, match="provenance key 'device' is derived from the runs"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", {"device": "x"}, allow_unfinished=True)
    with pytest.raises(PyphaseError, match="already in the committed layout"):
        res.export_experiment("exp_x", tmp_path / "results", tmp_path / "again")


def test_cli_export_writes_the_folder_and_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyphase import cli

    _export_runs(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["pyphase", "results", "export", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("exp_x", "--command", "c1", "--command", "c2", "--note", "n", "--json")
    assert code == 0
    prov = json.loads(out)
    assert (prov["command"], prov["notes"]) == (["c1", "c2"], ["n"])
    assert (tmp_path / "results" / "exp_x" / res.COMMITTED_SUMMARY_FILE).is_file()
    code, out, _ = run("exp_x", "--dest", "elsewhere")
    assert code == 0 and "exp_x: 8 runs, seeds [0, 1]" in out and (tmp_path / "elsewhere" / "exp_x").is_dir()
    code, _, err = run("missing")
    assert code == 2 and err == "error: no results for experiment 'missing' under runs/\n"


def test_a_damaged_steps_file_is_named_by_export_query_and_report(runs_root: Path, tmp_path: Path) -> None:
    from pyphase import report as rp

    victim = sorted((runs_root / "exp_a").glob(f"*/{res.STEPS_FILE}"))[2]
    data = bytearray(victim.read_bytes())
    mid = len(data) // 2
    data[mid - 40 : mid + 40] = b"\xff" * 80  # the footer (schema) stays readable, the data does not
    victim.write_bytes(bytes(data))
    for call in (
        lambda: res.export_experiment("exp_a", runs_root, tmp_path / "out"),
        lambda: res.query(res.scan(runs_root, "exp_a"), "SELECT avg(train_loss) AS m FROM steps"),
        lambda: rp.write_report(["exp_a"], root=runs_root, out=tmp_path / "rep" / "REPORT.md", n_boot=20),
    ):
        with pytest.raises(PyphaseError, match=f"{victim}: unreadable Parquet"):
            call()


def test_a_folder_of_exports_is_not_listed_as_an_experiment_of_runs(tmp_path: Path) -> None:
    """results/recheck_*/ holds exported experiments (summary.csv + steps.parquet each): it is not an
    experiment whose runs are those exports (it was listed as one with 1 run, 0 finished)."""
    container = tmp_path / "results" / "recheck_x"
    write_committed(container, "phase3a", SEED_3A_CSV)
    (container / "phase3a" / res.STEPS_FILE).write_bytes(b"")  # an export has one beside its summary
    assert [s.experiment for s in res.find_experiments(tmp_path / "results")] == []
    assert [(s.experiment, s.layout) for s in res.find_experiments(container)] == [("phase3a", res.COMMITTED_LAYOUT)]


# --------------------------------------------------------------------------- export: failures keep the earlier export
def _export_files(folder: Path) -> dict[str, bytes]:
    """Every file of an export folder (temporaries included) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_export_leaves_the_earlier_export_as_it_was(tmp_path: Path) -> None:
    """A check that fails (here --corpus of another corpus) comes before anything is written: the
    earlier export's summary.csv and steps.parquet are not rewritten under its old provenance.json."""
    s = _export_runs(tmp_path / "runs")
    dest = tmp_path / "results"
    res.export_experiment("exp_x", tmp_path / "runs", dest, {"command": ["pyphase train exp_x --seeds 2"]})
    before = _export_files(dest / "exp_x")
    write_runs(tmp_path / "seed0", s.filter(pl.col("seed") == 0))  # other runs: other files, were they written
    text = tmp_path / "corpus.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    with pytest.raises(PyphaseError, match="is not the corpus the runs recorded"):
        res.export_experiment("exp_x", tmp_path / "seed0", dest, corpus=text)
    assert _export_files(dest / "exp_x") == before


def test_an_export_that_fails_while_writing_leaves_the_earlier_one_and_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _export_runs(tmp_path / "runs")
    dest = tmp_path / "results"
    res.export_experiment("exp_x", tmp_path / "runs", dest)
    before = _export_files(dest / "exp_x")
    write_runs(tmp_path / "seed0", s.filter(pl.col("seed") == 0))

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)  # summary.csv is written by then
    with pytest.raises(PyphaseError, match=r"--dest .*results: cannot write .*exp_x \(\[Errno 28\] No space left on "
                                           r"device\); an earlier export there is unchanged"):
        res.export_experiment("exp_x", tmp_path / "seed0", dest)
    assert _export_files(dest / "exp_x") == before


@pytest.mark.parametrize("earlier", [True, False])
def test_export_failing_between_its_renames_says_which_files_were_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: bool
) -> None:
    _export_runs(tmp_path / "runs")
    dest = tmp_path / "results"
    if earlier:
        res.export_experiment("exp_x", tmp_path / "runs", dest)
    real, calls = os.replace, []

    def second_fails(a: object, b: object) -> None:
        calls.append(b)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(a, b)

    monkeypatch.setattr(res.os, "replace", second_fails)
    tail = "the other files are the earlier export's" if earlier else "the others not written"
    with pytest.raises(PyphaseError, match=rf"\(\[Errno 5\] Input/output error\); summary\.csv already replaced, {tail}: "
                                           r"export again$"):
        res.export_experiment("exp_x", tmp_path / "runs", dest)


@pytest.mark.parametrize("dest", ["afile", "afile/deeper"])
def test_export_to_a_path_through_a_file_is_a_one_line_error(tmp_path: Path, dest: str) -> None:
    _export_runs(tmp_path / "runs")
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(PyphaseError, match=rf"^--dest {tmp_path / dest}: {tmp_path / 'afile'} is a file, not a folder$"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / dest)
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_export_refuses_a_dest_whose_experiment_entry_is_a_file(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "exp_x").write_text("x")
    with pytest.raises(PyphaseError, match=r"exp_x is a file, not a folder"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results")


# --------------------------------------------------------------------------- export: the kept command
def test_re_export_of_other_runs_does_not_keep_a_command_that_did_not_make_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The earlier export came from `--seeds 2` (seeds 0 and 1, 8 runs); these runs are seed 0 only
    (4 runs): its command would contradict the seeds and run counts beside it."""
    s = _export_runs(tmp_path / "runs")
    dest = tmp_path / "results"
    res.export_experiment("exp_x", tmp_path / "runs", dest, {"command": ["pyphase train exp_x --seeds 2"],
                                                              "notes": ["n"]})
    write_runs(tmp_path / "seed0", s.filter(pl.col("seed") == 0))
    capsys.readouterr()
    res.export_experiment("exp_x", tmp_path / "seed0", dest)
    prov = res.read_provenance(dest / "exp_x")
    assert prov["command"] is None and prov["notes"] == ["n"]
    assert (prov["seeds"], prov["runs"]["finished"]) == ([0], 4)
    err = capsys.readouterr().err
    assert err.startswith("warning: the earlier export's command (pyphase train exp_x --seeds 2) is not kept: it made "
                          "seeds [0, 1] and 8 runs, these are seeds [0] and 4 runs")
    assert "--command" in err and err.count("\n") == 1
    res.export_experiment("exp_x", tmp_path / "seed0", dest, {"command": ["pyphase train exp_x --seeds 1"]})
    assert res.read_provenance(dest / "exp_x")["command"] == ["pyphase train exp_x --seeds 1"]
    assert capsys.readouterr().err == ""


def test_re_export_after_the_unfinished_runs_finish_keeps_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --allow-unfinished export (seed 1 of one config not finished yet), then the same sweep
    finished: the same plan, so its command is kept, without a warning."""
    s = _export_runs(tmp_path / "runs")
    last = s["run_id"][-1]
    summary = tmp_path / "runs" / "exp_x" / last / res.SUMMARY_FILE
    kept = summary.read_bytes()
    summary.unlink()
    dest = tmp_path / "results"
    res.export_experiment("exp_x", tmp_path / "runs", dest, {"command": ["c"]}, allow_unfinished=True)
    assert res.read_provenance(dest / "exp_x")["runs"] == {"finished": 7, "unfinished": 1, "packs_in_progress": 0}
    summary.write_bytes(kept)
    capsys.readouterr()
    res.export_experiment("exp_x", tmp_path / "runs", dest)
    assert res.read_provenance(dest / "exp_x")["command"] == ["c"] and capsys.readouterr().err == ""


def test_the_unfinished_error_names_the_option(tmp_path: Path) -> None:
    _export_runs(tmp_path / "runs")
    (tmp_path / "runs" / "exp_x" / "b32-unfinished").mkdir()
    (tmp_path / "runs" / "exp_x" / "b32-unfinished" / res.CHECKPOINT_FILE).write_bytes(b"x")
    with pytest.raises(PyphaseError, match=r"finish the sweep, or export them with --allow-unfinished$"):
        res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results")


@pytest.mark.parametrize("sql", ["DROP TABLE summaries", "  -- a comment\n drop table steps", "DELETE FROM summaries",
                                 "CREATE TABLE t AS SELECT * FROM summaries", "", "  "])
def test_sql_that_is_not_a_query_is_refused(runs_root: Path, sql: str) -> None:
    rs = res.scan(runs_root, "exp_a")
    with pytest.raises(PyphaseError, match=r"^SQL: (\w+ is not a query|the statement is empty); results query only reads"):
        res.query(rs, sql)
    assert res.query(rs, "SELECT COUNT(*) AS n FROM summaries").item() == 18  # the tables are still there


@pytest.mark.parametrize("sql", ["(SELECT lr FROM summaries)", "/* c */ WITH t AS (SELECT lr FROM summaries) SELECT * FROM t",
                                 pytest.param("FROM summaries SELECT lr", marks=pytest.mark.skipif(
                                     int(pl.__version__.split(".")[0]) < 2, reason="FROM-first SQL needs polars >= 2")),
                                 "-- c\nselect lr from summaries"])
def test_sql_queries_in_every_spelling_run(runs_root: Path, sql: str) -> None:
    assert res.query(res.scan(runs_root, "exp_a"), sql).height == 18


def test_check_output_folder_names_a_path_too_long_in_one_line(tmp_path) -> None:
    from pyphase.errors import PyphaseError
    from pyphase.results import check_output_folder

    with pytest.raises(PyphaseError, match=r"^--dest x: File name too long: .*x{300}$"):
        check_output_folder(tmp_path / ("x" * 300) / "phase3a", "--dest x")


@pytest.mark.parametrize("sql", ["SELECT * FROM read_csv('/etc/passwd')", "select * from READ_PARQUET ('x.parquet')",
                                 "WITH t AS (SELECT * FROM read_ndjson('a')) SELECT * FROM t"])
def test_query_refuses_sql_that_reads_files(sql) -> None:
    from pyphase.errors import PyphaseError
    from pyphase.results import ResultSet, query

    rs = ResultSet(summaries=pl.LazyFrame({"lr": [0.1]}), steps=pl.LazyFrame({"step": [1]}), sources=())
    with pytest.raises(PyphaseError, match=r"^SQL: read_[a-z]+\(\) reads a file; results query only reads"):
        query(rs, sql)
    assert query(rs, "SELECT lr AS read_csv_count FROM summaries")["read_csv_count"].to_list() == [0.1]


# --------------------------------------------------------------------------- leftovers of a killed staged write
EXPORT_FILES = [res.COMMITTED_SUMMARY_FILE, res.STEPS_FILE, res.PROVENANCE_FILE]


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_export_removes_what_a_killed_export_left_and_nothing_else(tmp_path: Path, staging_child) -> None:
    """An export SIGKILLed after staging left its hidden temporaries: the next export into the folder
    removes them (and those in the older ".<name>.tmp.<pid>" form), but not the temporaries of an export
    still running, of another host, of names export does not write, nor any other file."""
    _export_runs(tmp_path / "runs")
    out = tmp_path / "results" / "exp_x"
    out.mkdir(parents=True)
    dead = staging_child(out, EXPORT_FILES)
    left = _names(out)
    assert len(left) == 3 and all(n.startswith(".") and n.endswith(f".{dead}") for n in left)
    old_form = f".{res.STEPS_FILE}.tmp.{dead}"
    (out / old_form).write_bytes(b"x")
    staging_child(out, EXPORT_FILES, stay=True)  # an export into the same folder, still writing
    kept = _names(out) - left - {old_form}
    for name in (f".{res.COMMITTED_SUMMARY_FILE}.tmp.otherhost.{dead}",  # another machine's: its pid says nothing here
                 f".notes.txt.tmp.{dead}", f".{res.STEPS_FILE}.tmp.{dead}x", f".{res.STEPS_FILE}.tmp.",
                 f"{res.STEPS_FILE}.tmp.{dead}", f".{res.STEPS_FILE}.tmp.0", ".hidden"):
        (out / name).write_bytes(b"keep")
        kept.add(name)
    (out / f".{res.PROVENANCE_FILE}.tmp.{dead}").mkdir()  # the name of a leftover, but a folder
    kept.add(f".{res.PROVENANCE_FILE}.tmp.{dead}")
    res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", {})
    assert _names(out) == kept | set(EXPORT_FILES)
    assert all((out / n).read_bytes() in (b"keep", b"half written") for n in kept if (out / n).is_file())


def test_a_leftover_that_cannot_be_removed_does_not_fail_the_export(tmp_path: Path, staging_child,
                                                                     monkeypatch) -> None:
    _export_runs(tmp_path / "runs")
    out = tmp_path / "results" / "exp_x"
    out.mkdir(parents=True)
    dead = staging_child(out, EXPORT_FILES)
    left = _names(out)
    real = os.unlink

    def unlink(path, *a, **k):
        if str(path).endswith(f".{dead}"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "unlink", unlink)
    res.export_experiment("exp_x", tmp_path / "runs", tmp_path / "results", {})
    assert _names(out) == left | set(EXPORT_FILES)
    assert res.read_provenance(out)["runs"]["finished"] == 8


def test_remove_stale_staged_takes_only_dead_writers_temporaries_of_the_names_given(tmp_path: Path,
                                                                                  staging_child) -> None:
    dead = staging_child(tmp_path, ["a.csv", "regime_map_clip7.png", "b.csv"])
    alive = staging_child(tmp_path, ["a.csv"], stay=True)
    for name in (f".a.csv.tmp.{alive}", f".a.csv.tmp.{dead}", f".a.csv.tmp.{2**70}", f".c.csv.tmp.{dead}",
                 f".regime_map.png.tmp.{dead}"):
        (tmp_path / name).write_bytes(b"x")
    before = _names(tmp_path)
    removed = res.remove_stale_staged(tmp_path, ["a.csv"], name_glob="regime_map_clip*.png")
    assert len(removed) == 4 and not set(removed) & _names(tmp_path)
    assert set(removed) == {n for n in before if n.startswith((".a.csv.", ".regime_map_clip7.png."))
                            and not n.endswith(f".{alive}")}
    assert res.remove_stale_staged(tmp_path, ["a.csv"], name_glob="regime_map_clip*.png") == []
    assert res.remove_stale_staged(tmp_path / "nosuch", ["a.csv"]) == []


# --------------------------------------------------------------------------- a finished run's steps are all there
def test_a_finished_run_without_its_steps_file_is_one_line_for_every_reader(runs_root: Path, tmp_path: Path) -> None:
    """A run with its summary (finished) but no steps.parquet is not read as one without steps (export
    claimed "every logged step of every finished run", report crashed): every reader stops in one line
    naming the file, in `train`'s words, and export writes nothing."""
    from pyphase import sweep

    dest = tmp_path / "out"
    res.export_experiment("exp_a", runs_root, dest)  # an earlier export, of all the runs
    before = _export_files(dest / "exp_a")
    victim = sorted((runs_root / "exp_a").glob(f"*/{res.STEPS_FILE}"))[4]
    victim.unlink()
    with pytest.raises(PyphaseError) as trained:
        sweep._check_steps(victim)  # what `pyphase train` says of this run folder
    message = str(trained.value)
    assert message.startswith(f"{victim}: unreadable Parquet (No such file or directory")
    assert message.endswith("); remove its run folder to train the run again") and "\n" not in message
    for call in (
        lambda: res.scan(runs_root, "exp_a"),
        lambda: res.scan(runs_root),
        lambda: res.export_experiment("exp_a", runs_root, dest),
        lambda: res.export_experiment("exp_a", runs_root, tmp_path / "new" / "dest"),
        lambda: res.show_text(runs_root, "exp_a"),
        lambda: res.query_text(runs_root, "SELECT count(*) AS n FROM summaries"),
    ):
        with pytest.raises(PyphaseError) as e:
            call()
        assert str(e.value) == message
    assert _export_files(dest / "exp_a") == before and not (tmp_path / "new").exists()
    victim.write_bytes(b"not a parquet file")  # damaged rather than missing: the same advice
    with pytest.raises(PyphaseError, match=rf"^{victim}: unreadable Parquet \(.*\); remove its run folder to train "
                                           "the run again$"):
        res.export_experiment("exp_a", runs_root, dest)
    assert _export_files(dest / "exp_a") == before


def test_export_refuses_a_run_whose_steps_file_holds_none_of_its_steps(runs_root: Path, tmp_path: Path) -> None:
    """An emptied steps.parquet (its columns, no rows) would leave the run out of the exported steps
    under the claim "every logged step of every finished run"."""
    victim = sorted((runs_root / "exp_a").glob(f"*/{res.STEPS_FILE}"))[1]
    pl.read_parquet(victim).head(0).write_parquet(victim)
    with pytest.raises(PyphaseError) as e:
        res.export_experiment("exp_a", runs_root, tmp_path / "out")
    assert str(e.value) == (f"{victim}: holds no steps of run {victim.parent.name}; remove its run folder to train "
                            "the run again")
    assert not (tmp_path / "out").exists()


def test_an_exported_folder_whose_steps_lack_a_run_is_one_line(runs_root: Path, tmp_path: Path) -> None:
    """provenance.json of an export says its steps.parquet holds steps of every run of summary.csv
    (all of them, or thinned, which keeps each run's last row) and how many rows: a steps.parquet that
    lacks a run, or rows, is a one-line error naming it, not a report that crashes."""
    dest = tmp_path / "exp"
    thin = tmp_path / "thin"
    res.export_experiment("exp_a", runs_root, dest)
    res.export_experiment("exp_a", runs_root, thin, max_steps_bytes=1)
    assert res.read_provenance(thin / "exp_a")["files"]["steps"]["sampling"].startswith("thinned")
    assert res.collect_steps(res.scan(thin, "exp_a"))["run_id"].n_unique() == 18  # thinned: still every run
    path = dest / "exp_a" / res.STEPS_FILE
    full = pl.read_parquet(path)
    gone = sorted(full["run_id"].unique())[3]
    full.filter(pl.col("run_id") != gone).write_parquet(path)
    with pytest.raises(PyphaseError) as e:
        res.scan(dest, "exp_a")
    assert str(e.value) == (
        f"{path}: no steps of 1 of the 18 runs of summary.csv ({gone}), though provenance.json records every logged "
        "step of every finished run; restore the folder (e.g. git checkout) or export the experiment again from its "
        "run folders")
    for call in (lambda: res.show_text(dest, "exp_a"), lambda: res.query_text(dest, "SELECT 1 AS one FROM summaries")):
        with pytest.raises(PyphaseError, match=f"^{path}: no steps of 1 of the 18 runs"):
            call()
    full.filter((pl.col("run_id") != gone) | (pl.col("step") < 500)).write_parquet(path)  # rows of a run lost
    with pytest.raises(PyphaseError) as e:
        res.scan(dest, "exp_a")
    assert str(e.value) == (f"{path}: holds {full.height - 6} rows, provenance.json records {full.height}; restore the "
                            "folder (e.g. git checkout) or export the experiment again from its run folders")
    path.unlink()  # an export committed without its steps (results/recheck_h200x4_7d039b3) reads as one without
    assert res.collect_steps(res.scan(dest, "exp_a")).height == 0
