"""The results/compare/report commands through the real entry point: output formats, and every
user error as one line on stderr with exit code 2 (in-process through `main`, and once through
`python -m pyphase` in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_analysis import LRS, as_prediction, bowl_summaries
from test_results import SEED_3A_CSV, write_committed, write_runs

from pyphase import cli
from pyphase.results import SUMMARY_FILE


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pyphase", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with runs/exp_a (run folders) and results/phase3a (committed CSV)."""
    write_runs(tmp_path / "runs", bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=2, experiment="exp_a"))
    write_committed(tmp_path / "results", "phase3a", SEED_3A_CSV)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_results_list_formats(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["results", "list", "--format", "json"], monkeypatch, capsys)
    assert code == 0
    rows = json.loads(out)
    assert [(r["experiment"], r["layout"], r["runs"], r["finished"]) for r in rows] == [
        ("exp_a", "runs", 30, 30),
        ("phase3a", "committed", 10, 10),
    ]
    code, out, _ = run_cli(["results", "list"], monkeypatch, capsys)
    assert code == 0 and "| exp_a" in out and "| phase3a" in out


def test_results_show_csv_is_sorted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["results", "show", "phase3a", "--format", "csv"], monkeypatch, capsys)
    assert code == 0
    import io

    df = pl.read_csv(io.StringIO(out))
    assert df.height == 10 and df.columns[:3] == ["batch_size", "lr", "gradient_clip"]
    assert df.select("batch_size", "lr").rows() == sorted(df.select("batch_size", "lr").rows())


def test_results_query(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sql = (
        "SELECT experiment, COUNT(*) AS n, MIN(final_val_loss) AS best FROM summaries "
        "GROUP BY experiment ORDER BY experiment"
    )
    code, out, _ = run_cli(["results", "query", sql, "--format", "json"], monkeypatch, capsys)
    assert code == 0
    rows = json.loads(out)
    assert [(r["experiment"], r["n"]) for r in rows] == [("exp_a", 30), ("phase3a", 10)]
    assert rows[1]["best"] == 3.321
    code, out, _ = run_cli(
        ["results", "query", "SELECT COUNT(*) AS n FROM summaries", "--experiment", "phase3a", "--format", "csv"],
        monkeypatch,
        capsys,
    )
    assert out.split() == ["n", "10"]


def test_compare_and_report(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pred = workdir / "pred"
    pred.mkdir()
    as_prediction(bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, noise=0.0)).write_parquet(
        pred / "t.parquet"
    )
    code, out, _ = run_cli(
        ["compare", "exp_a", "--prediction", "pred", "--b-noise", "50", "--json"], monkeypatch, capsys
    )
    assert code == 0
    data = json.loads(out)
    assert {t["name"]: t["passed"] for t in data["targets"]}["clip_frequency"] is True
    code, out, _ = run_cli(["compare", "exp_a"], monkeypatch, capsys)
    assert code == 0 and out.startswith("# exp_a: predicted vs measured")
    code, out, _ = run_cli(["report", "exp_a", "phase3a", "--prediction", "pred"], monkeypatch, capsys)
    assert code == 0 and out.strip() == "wrote results/REPORT.md"
    assert "## phase3a" in (workdir / "results" / "REPORT.md").read_text()


TRAINER_SETTINGS = {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "momentum": 0.9, "warmup_steps": 0,
                    "schedule": "constant"}


def _write_prediction(folder: Path, summaries: pl.DataFrame, steps: int, **settings: object) -> None:
    """A prediction folder as `pyphase predict --out` writes it: trajectories and prediction.json."""
    folder.mkdir()
    as_prediction(summaries).write_parquet(folder / "trajectories.parquet")
    (folder / "prediction.json").write_text(json.dumps(
        {"kind": "pyphase.prediction", "optimizer": "adamw", "steps": steps,
         "optimizer_settings": TRAINER_SETTINGS | settings}))


def test_compare_warns_of_other_steps_and_settings_than_the_runs_used(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run folders: each run's config.json; the warnings head compare's Markdown and the report's
    comparison section, and are in the JSON; a prediction of the runs' own settings warns of nothing."""
    for run in (workdir / "runs" / "exp_a").iterdir():
        (run / "config.json").write_text(json.dumps({"steps": 1000, "optimizer": "adamw"} | TRAINER_SETTINGS))
    same = bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, noise=0.0)
    _write_prediction(workdir / "pred", same, 5000, weight_decay=0.0, momentum=0.5)
    _write_prediction(workdir / "pred_same", same, 1000, momentum=0.5)  # momentum: no adamw setting
    expected = ["The prediction simulated 5000 steps, the runs trained 1000.",
                "The prediction simulated weight decay 0, the runs used 0.01."]
    code, out, _ = run_cli(["compare", "exp_a", "--prediction", "pred", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["warnings"] == expected
    code, out, _ = run_cli(["compare", "exp_a", "--prediction", "pred"], monkeypatch, capsys)
    assert code == 0 and "\n\n".join(["Prediction: pred", *(f"⚠ {w}" for w in expected)]) + "\n\n|" in out
    code, out, _ = run_cli(["compare", "exp_a", "--prediction", "pred_same"], monkeypatch, capsys)
    assert code == 0 and "⚠ The prediction simulated" not in out
    code, _, _ = run_cli(["report", "exp_a", "--prediction", "pred"], monkeypatch, capsys)
    report = (workdir / "results" / "exp_a" / "REPORT.md").read_text()
    assert code == 0 and all(f"⚠ {w}" in report.split("### Predicted vs measured")[1] for w in expected)
    # ...and in the summary's sentence on the prediction, before any table
    summary = next(line for line in report.splitlines() if "scored targets" in line or "could be scored" in line)
    assert summary.endswith(" ".join(f"⚠ {w}" for w in expected)), summary


def test_compare_reads_committed_settings_from_provenance(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Committed results: the settings provenance.json records as common to every run; results
    without them (older exports) warn of the steps only."""
    write_committed(workdir / "results", "exported", SEED_3A_CSV,
                    {"run_config": {"common": {"steps": 5000, "optimizer": "adamw"} | TRAINER_SETTINGS
                                    | {"betas": [0.9, 0.95]}, "varies": ["batch_size", "lr"]}})
    grid = bowl_summaries(batches=(128, 256), lrs=(0.01, 0.02, 0.03, 0.05, 0.1), seeds=1, noise=0.0)
    _write_prediction(workdir / "pred", grid, 5000)
    code, out, _ = run_cli(["compare", "exported", "--prediction", "pred", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["warnings"] == [
        "The prediction simulated betas (0.9, 0.999), the runs used (0.9, 0.95)."]
    code, out, _ = run_cli(["compare", "phase3a", "--prediction", "pred", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["warnings"] == []  # 5000 steps as simulated; no settings recorded
    (workdir / "pred" / "prediction.json").write_text(json.dumps({"steps": 10000, "optimizer_settings": {}}))
    code, out, _ = run_cli(["compare", "phase3a", "--prediction", "pred", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["warnings"] == ["The prediction simulated 10000 steps, the runs trained 5000."]


def _write_predict_output(folder: Path) -> dict:
    """A whole `pyphase predict --out` folder for exp_a's grid: both tables, a regime map, and a
    prediction.json recording the grid and trajectories.parquet's sha256. Returns the summary."""
    import hashlib

    folder.mkdir()
    table = as_prediction(bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, noise=0.0))
    table.write_parquet(folder / "trajectories.parquet")
    table.select("clip", "batch_size", "lr", "seed", pl.lit(100).alias("step"), "final_loss").write_parquet(
        folder / "curves.parquet")
    (folder / "regime_map_clip1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary = {"kind": "pyphase.prediction", "optimizer": "adamw", "groups": [{"clip": 1.0, "label": "1"}],
               "batch_sizes": [32, 64, 128], "lrs": sorted(set(LRS[::3])), "seeds": 1, "steps": 5000,
               "files": {"trajectories": "trajectories.parquet", "curves": "curves.parquet",
                         "summary": "prediction.json", "regime_map_1": "regime_map_clip1.png"},
               "trajectories_sha256": hashlib.sha256((folder / "trajectories.parquet").read_bytes()).hexdigest()}
    (folder / "prediction.json").write_text(json.dumps(summary))
    return summary


INTERRUPTED_OUTPUTS = [
    # a write stopped before prediction.json: the tables (and maps) without it
    ("no prediction.json", {"prediction.json": None},
     "trajectories.parquet, curves.parquet and 1 regime map but no prediction.json"),
    ("tables only", {"prediction.json": None, "regime_map_clip1.png": None},
     "trajectories.parquet and curves.parquet but no prediction.json"),
    ("trajectories only", {"prediction.json": None, "regime_map_clip1.png": None, "curves.parquet": None},
     "trajectories.parquet but no prediction.json"),
    # new tables beside an earlier prediction's prediction.json
    ("another table", {"trajectories_sha256": "0" * 64},
     "trajectories.parquet is not the table its prediction.json was written with"),
    ("other batch sizes", {"trajectories_sha256": None, "batch_sizes": [4, 8]},
     "prediction.json records batch sizes [4, 8], trajectories.parquet holds [32, 64, 128]"),
    ("other LRs", {"trajectories_sha256": None, "lrs": [1e-3, 1e-2]},
     "prediction.json records LRs [0.001, 0.01], trajectories.parquet holds "
     "[0.0001, 0.000562341, 0.00316228, 0.0177828, 0.1]"),
    ("other clips", {"trajectories_sha256": None, "groups": [{"clip": None}, {"clip": 1.0}]},
     "prediction.json records clips [none, 1], trajectories.parquet holds [1]"),
    ("other seeds", {"trajectories_sha256": None, "seeds": 3},
     "prediction.json records 3 seeds, trajectories.parquet holds 1"),
    ("other optimizer", {"trajectories_sha256": None, "optimizer": "sgd"},
     "prediction.json records optimizer [sgd], trajectories.parquet holds [adamw]"),
]


@pytest.mark.parametrize(("change", "why"), [c[1:] for c in INTERRUPTED_OUTPUTS],
                         ids=[c[0] for c in INTERRUPTED_OUTPUTS])
def test_compare_refuses_an_interrupted_or_mixed_predict_output(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], change: dict, why: str
) -> None:
    """A folder `pyphase predict` did not finish writing is one `error:` line (exit 2), not a prediction
    scored as if whole; the same folder written whole is read."""
    summary = _write_predict_output(workdir / "pred")
    code, _, err = run_cli(["compare", "exp_a", "--prediction", "pred", "--json"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    for name, value in change.items():
        if name.endswith((".json", ".parquet", ".png")):
            (workdir / "pred" / name).unlink()
        elif value is None:
            summary.pop(name)
        else:
            summary[name] = value
    if (workdir / "pred" / "prediction.json").exists():
        (workdir / "pred" / "prediction.json").write_text(json.dumps(summary))
    for cmd in (["compare", "exp_a", "--prediction", "pred"], ["report", "exp_a", "--prediction", "pred"]):
        code, out, err = run_cli(cmd, monkeypatch, capsys)
        assert (code, out) == (2, "")
        assert err == (f"error: pred: looks like an interrupted or mixed `pyphase predict` output ({why}); "
                       "run pyphase predict again (--out pred)\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["results", "show", "x"], "error: no results for experiment 'x' under runs/ or results/"),
        (["compare", "x"], "error: no results for experiment 'x' under runs/ or results/"),
        (["report", "x"], "error: no results for experiment 'x' under runs/ or results/"),
        (["results", "list", "--format", "xml"], "error: unknown format 'xml': use one of table, csv, json"),
        (["compare", "exp_a", "--prediction", "nope"], "error: nope: no such prediction file or folder"),
        (["compare", "exp_a", "--calibration", "nope.json"], "error: --calibration nope.json: no such file"),
        (["report", "exp_a", "--preface", "nope.md"], "error: --preface nope.md: no such file"),
        (["report", "exp_a", "--prediction", "=p"], "error: --prediction '=p': expected PATH or LABEL=PATH"),
        (["results", "list", "--runs", "none", "--results", "none2"], "error: no experiments under none/ or none2/"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and err == message + "\n" and out == ""


def test_sql_error_is_one_line_exit_2(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["results", "query", "SELEC * FROM summaries"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: SQL failed: ") and err.count("\n") == 1


def test_malformed_summary_through_python_m_pyphase(workdir: Path) -> None:
    run = sorted((workdir / "runs" / "exp_a").iterdir())[0]
    pl.read_parquet(run / SUMMARY_FILE).drop("lr").write_parquet(run / SUMMARY_FILE)
    proc = subprocess.run(
        [sys.executable, "-m", "pyphase", "results", "show", "exp_a"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: runs/exp_a/{run.name}/summary.parquet: missing column 'lr'\n"
    assert proc.stdout == ""


def test_real_trainer_output_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The trainer's own run folders (smoke experiment, CPU, synthetic corpus) through show and report."""
    smoke = Path(__file__).resolve().parents[1] / "experiments" / "smoke.toml"
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", str(smoke), "--device", "cpu", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    code, out, _ = run_cli(["results", "show", "smoke", "--format", "json"], monkeypatch, capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 12 and {r["batch_size"] for r in rows} == {4, 8}
    code, out, err = run_cli(["report", "smoke"], monkeypatch, capsys)
    assert code == 0, err
    text = (tmp_path / "results" / "smoke" / "REPORT.md").read_text()
    assert "12 finished runs from `runs/smoke`" in text and "![Loss curves](plots/smoke_loss_curves.png)" in text


def test_report_quotes_the_command_that_reproduces_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    import shlex

    for name in ("pred", "pred2"):
        (workdir / name).mkdir()
        as_prediction(bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, noise=0.0)).write_parquet(
            workdir / name / "t.parquet"
        )
    (workdir / "pre.md").write_text("## What this means\n\nWords.")
    points = [{"step": 0, "noise": {"b_simple": 0.5}}, {"step": 50, "noise": {"b_simple": 25.0}}]
    (workdir / "cal.json").write_text(json.dumps({"provenance": {"measurements": {"fit_step": 50, "points": points}}}))
    args = ["report", "exp_a", "--out", "out/R.md", "--prediction", "pred", "--prediction", "post sweep=pred2",
            "--calibration", "cal.json", "--preface", "pre.md"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert (code, out, err) == (0, "wrote out/R.md\n", "")
    first = (workdir / "out" / "R.md").read_text()
    quoted = re.findall(r"`(pyphase report [^`]*)`", first)
    assert quoted == [
        "pyphase report exp_a --prediction pred --prediction 'post sweep=pred2' --preface pre.md "
        "--calibration cal.json --out out/R.md"
    ]
    assert "noise-scale (B_noise=25)" in first and "step 50 (fit_step)" in first
    (workdir / "out" / "R.md").unlink()
    code, _, _ = run_cli(shlex.split(quoted[0])[1:], monkeypatch, capsys)  # the quoted command, as typed
    assert code == 0 and (workdir / "out" / "R.md").read_text() == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "exp_a", "--out", "afile/r.md"], "error: --out afile/r.md: afile is a file, not a folder"),
        (["results", "export", "exp_a", "--dest", "afile"], "error: --dest afile: afile is a file, not a folder"),
        (["results", "export", "exp_a", "--dest", "afile/x"], "error: --dest afile/x: afile is a file, not a folder"),
        (["results", "query", "DROP TABLE summaries"],
         "error: SQL: DROP is not a query; results query only reads the tables summaries and steps "
         "(SELECT ..., WITH ... SELECT ...)"),
    ],
)
def test_bad_output_paths_and_statements_are_one_line_exit_2(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (workdir / "afile").write_text("a file")
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert (code, out, err) == (2, "", message + "\n")
    assert (workdir / "afile").read_text() == "a file" and not list(workdir.rglob("*.png"))


def test_bad_output_path_through_python_m_pyphase(workdir: Path) -> None:
    (workdir / "afile").write_text("a file")
    for args, message in [(["report", "exp_a", "--out", "afile/r.md"], "error: --out afile/r.md: afile is a file, not a folder"),
                          (["results", "export", "exp_a", "--dest", "afile"], "error: --dest afile: afile is a file, not a folder")]:
        proc = subprocess.run([sys.executable, "-m", "pyphase", *args], cwd=workdir, capture_output=True, text=True,
                              timeout=120)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message + "\n")


def test_report_out_an_existing_folder_through_the_cli(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "sub").mkdir()
    code, out, err = run_cli(["report", "exp_a", "--out", "sub"], monkeypatch, capsys)
    assert (code, out, err) == (0, "wrote sub/REPORT.md\n", "")
    assert (workdir / "sub" / "plots" / "exp_a_loss_curves.png").is_file()


def test_export_over_an_earlier_one_warns_when_its_command_is_not_kept(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run_cli(["results", "export", "exp_a", "--dest", "exp", "--command", "pyphase train exp_a --seeds 2"],
                         monkeypatch, capsys)
    assert code == 0
    write_runs(workdir / "r0", bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, experiment="exp_a"))
    code, out, err = run_cli(["results", "export", "exp_a", "--runs", "r0", "--dest", "exp", "--json"], monkeypatch,
                             capsys)
    assert code == 0 and json.loads(out)["command"] is None and json.loads(out)["seeds"] == [0]
    assert err == (
        "warning: the earlier export's command (pyphase train exp_a --seeds 2) is not kept: it made seeds [0, 1] and "
        "30 runs, these are seeds [0] and 15 runs; exp/exp_a/provenance.json records command null (give --command to "
        "record the command that made these runs)\n"
    )


def test_a_preface_that_is_not_utf8_text_is_one_line_naming_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "bin.md").write_bytes(b"\x85\x86 not utf-8")
    code, out, err = run_cli(["report", "exp_a", "--preface", "bin.md"], monkeypatch, capsys)
    assert code == 2 and out == "" and err.startswith("error: --preface bin.md: cannot read it as UTF-8 text (")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- which folder is read
@pytest.fixture()
def two_sources(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """workdir (runs/exp_a: 30 runs of two seeds) plus other/exp_a: another sweep of exp_a (one seed,
    other noise: 15 runs), exported there in the committed layout, as `--results other` names it."""
    write_runs(workdir / "elsewhere", bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, rng_seed=9,
                                                     experiment="exp_a"))
    code, _, err = run_cli(["results", "export", "exp_a", "--runs", "elsewhere", "--dest", "other"], monkeypatch, capsys)
    assert code == 0, err
    return workdir


def _show_rows(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`results show --format json ...`: its number of rows, and the line naming its folder (stderr)."""
    code, out, err = run_cli(["results", "show", *args, "--format", "json"], monkeypatch, capsys)
    assert code == 0, err
    return len(json.loads(out)), err.strip()


@pytest.mark.parametrize(
    ("options", "folder", "layout", "n"),
    [
        ([], "runs/exp_a", "runs", 30),  # no root option: runs/ first, as before
        (["--results", "other"], "other/exp_a", "committed", 15),  # --results alone: runs/ is not read
        (["--runs", "runs", "--results", "other"], "runs/exp_a", "runs", 30),  # both: --runs first
        (["--results", "other", "--runs", "runs"], "runs/exp_a", "runs", 30),  # (whatever the order typed)
        (["--runs", "nowhere", "--results", "other"], "other/exp_a", "committed", 15),
        (["--runs", "elsewhere"], "elsewhere/exp_a", "runs", 15),
    ],
)
def test_show_compare_and_report_read_the_folder_given_and_say_which(
    two_sources: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], options: list[str],
    folder: str, layout: str, n: int,
) -> None:
    """What the user typed wins: `--results DIR` alone reads DIR, not the default runs/ that also
    holds the experiment; with no root option runs/ comes first; with both, --runs. Every command
    names the folder it read."""
    said = f"read from {folder} ({layout} layout, {n} finished runs)"
    assert _show_rows(["exp_a", *options], monkeypatch, capsys) == (n, f"exp_a: {said}")
    code, out, err = run_cli(["results", "show", "exp_a", *options], monkeypatch, capsys)
    assert code == 0 and err == "" and out.splitlines()[0] == f"exp_a: {said}"
    code, out, err = run_cli(["compare", "exp_a", *options], monkeypatch, capsys)
    assert code == 0, err
    assert out.splitlines()[:3] == ["# exp_a: predicted vs measured", "", f"Measured: {said.replace(folder, f'`{folder}`')}"]
    code, out, err = run_cli(["compare", "exp_a", *options, "--json"], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and (data["measured_source"], data["measured_layout"]) == (folder, layout)
    code, out, err = run_cli(["results", "query", "SELECT COUNT(*) AS n FROM summaries", "--experiment", "exp_a",
                              *options, "--format", "csv"], monkeypatch, capsys)
    assert code == 0 and out.split() == ["n", str(n)]
    code, out, err = run_cli(["report", "exp_a", *options, "--out", "rep/"], monkeypatch, capsys)
    assert (code, out, err) == (0, "wrote rep/REPORT.md\n", "")
    text = (two_sources / "rep" / "REPORT.md").read_text()
    assert f"**exp_a**: read from `{folder}` ({layout} layout)" in text
    assert f"{n} finished runs from `{folder}`" in text


def test_report_quotes_the_root_options_given(
    two_sources: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quoted command reads what the report read: a given --results is quoted, also when it
    names the default folder (giving it leaves runs/ out)."""
    import re
    import shlex

    write_runs(two_sources / "results", bowl_summaries(batches=(32, 64, 128), lrs=LRS[::3], seeds=1, rng_seed=5,
                                                       experiment="exp_a"))
    for options, quoted, folder in [
        (["--results", "other"], "--results other", "other/exp_a"),
        (["--results", "results"], "--results results", "results/exp_a"),
        ([], "", "runs/exp_a"),
    ]:
        code, _, err = run_cli(["report", "exp_a", *options, "--out", "q.md"], monkeypatch, capsys)
        assert code == 0, err
        text = (two_sources / "q.md").read_text()
        assert f"read from `{folder}`" in text
        command = re.findall(r"`(pyphase report [^`]*)`", text)
        assert command == [" ".join(["pyphase report exp_a", *([quoted] if quoted else []), "--out q.md"])]
        (two_sources / "q.md").unlink()
        code, _, _ = run_cli(shlex.split(command[0])[1:], monkeypatch, capsys)  # the quoted command reads the same
        assert code == 0 and (two_sources / "q.md").read_text() == text


def test_list_reads_only_the_folders_given(
    two_sources: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["results", "list", "--results", "other", "--format", "json"], monkeypatch, capsys)
    assert code == 0 and [(r["experiment"], r["root"]) for r in json.loads(out)] == [("exp_a", "other")]
    code, out, _ = run_cli(["results", "list", "--format", "json"], monkeypatch, capsys)
    assert code == 0 and [(r["experiment"], r["root"]) for r in json.loads(out)] == [("exp_a", "runs"),
                                                                                      ("phase3a", "results")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["results", "show", "exp_a", "--results", "empty"],
         "error: no results for experiment 'exp_a' under empty/ (runs/exp_a/ exists, but runs/ is not among the "
         "folders read)"),
        (["compare", "exp_a", "--results", "empty"],
         "error: no results for experiment 'exp_a' under empty/ (runs/exp_a/ exists, but runs/ is not among the "
         "folders read)"),
        (["report", "phase3a", "--runs", "elsewhere"],
         "error: no results for experiment 'phase3a' under elsewhere/ (results/phase3a/ exists, but results/ is not "
         "among the folders read)"),
        (["results", "show", "exp_a", "--runs", "empty", "--results", "empty2"],
         "error: no results for experiment 'exp_a' under empty/ or empty2/ (runs/exp_a/ exists, but runs/ is not "
         "among the folders read)"),
    ],
)
def test_a_given_folder_without_the_experiment_is_an_error_not_a_fallback(
    two_sources: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
    message: str,
) -> None:
    """A folder the user gave is authoritative: an experiment it lacks is not read from the default
    runs/ or results/ instead; the error says the default folder holds it."""
    (two_sources / "empty").mkdir()
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert (code, out, err) == (2, "", message + "\n")


def test_root_options_default_to_not_given_in_help(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help says which folders are read; export's --runs (its input) still defaults to runs/."""
    code, out, _ = run_cli(["results", "show", "--help"], monkeypatch, capsys)
    flat = " ".join(out.replace("│", " ").split())
    assert code == 0 and "only those" in flat and "Given without --runs, it is the only folder read" in flat
    code, _, err = run_cli(["results", "export", "exp_a", "--dest", "exp"], monkeypatch, capsys)
    assert code == 0, err
    assert (workdir / "exp" / "exp_a" / "summary.csv").is_file()


# --------------------------------------------------------------------------- a finished run without its steps
def test_a_finished_run_without_its_steps_file_stops_every_command_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder with its summary but no steps.parquet: export, show, query, compare and report
    exit 2 with one line naming the file (as `train` says it) and write nothing; before, export
    claimed every finished run's steps and report crashed in a traceback."""
    code, _, err = run_cli(["results", "export", "exp_a", "--dest", "exp"], monkeypatch, capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in (workdir / "exp" / "exp_a").iterdir()}
    run = sorted((workdir / "runs" / "exp_a").iterdir())[0]
    (run / "steps.parquet").unlink()
    head = f"error: runs/exp_a/{run.name}/steps.parquet: unreadable Parquet (No such file or directory"
    for args in (["results", "export", "exp_a", "--dest", "exp"], ["results", "export", "exp_a", "--dest", "new"],
                 ["results", "show", "exp_a", "--runs", "runs"], ["results", "query", "SELECT 1 AS one FROM summaries"],
                 ["compare", "exp_a", "--runs", "runs"], ["report", "exp_a", "--runs", "runs", "--out", "rep/"]):
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert (code, out) == (2, ""), args
        assert err.startswith(head) and err.endswith("); remove its run folder to train the run again\n"), args
        assert err.count("\n") == 1, args
    assert {p.name: p.read_bytes() for p in (workdir / "exp" / "exp_a").iterdir()} == before
    assert not (workdir / "new").exists() and not (workdir / "rep").exists()


def test_an_exported_folder_whose_steps_lack_a_run_stops_every_command_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--results of an export whose steps.parquet lacks a run of its summary.csv (its provenance says
    it holds every finished run's steps): one line naming the file, not a report's traceback."""
    code, _, err = run_cli(["results", "export", "exp_a", "--dest", "exp"], monkeypatch, capsys)
    assert code == 0, err
    steps = workdir / "exp" / "exp_a" / "steps.parquet"
    full = pl.read_parquet(steps)
    gone = sorted(full["run_id"].unique())[0]
    full.filter(pl.col("run_id") != gone).write_parquet(steps)
    message = (f"error: exp/exp_a/steps.parquet: no steps of 1 of the 30 runs of summary.csv ({gone}), though "
               "provenance.json records every logged step of every finished run; restore the folder (e.g. git "
               "checkout) or export the experiment again from its run folders\n")
    for args in (["report", "exp_a", "--results", "exp", "--out", "rep/"], ["results", "show", "exp_a", "--results", "exp"],
                 ["results", "query", "SELECT 1 AS one FROM summaries", "--results", "exp"],
                 ["compare", "exp_a", "--results", "exp"]):
        assert run_cli(args, monkeypatch, capsys) == (2, "", message), args
    assert not (workdir / "rep").exists()
