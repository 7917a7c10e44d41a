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
