"""`pyphase predict` through the console entry point: the default command on built-in parameters
(no data, no GPU, no calibration), JSON and table output, a calibration file, and every user error
as one line on stderr with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pyphase.nqm import NQMParams
from pyphase.schema import PREDICTION_COLUMNS

SMALL_GRID = ["--batch", "8,32", "--lr", "1e-3:1e-1:3", "--steps", "200", "--seeds", "2"]


def main_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console entry point `pyphase.cli.main` in this process: (exit code, stdout, stderr)."""
    from pyphase.cli import main

    monkeypatch.setattr(sys, "argv", ["pyphase", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_default_predict_runs_on_builtin_parameters(tmp_path):
    """`pyphase predict --clip 1.0` with nothing else: the default grid, built-in NQM, all outputs."""
    out = tmp_path / "pred"
    r = subprocess.run([sys.executable, "-m", "pyphase", "predict", "--clip", "1.0", "--out", str(out)],
                       capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    source = NQMParams.default().source
    assert f"NQM parameters: {source}" in r.stdout and "clip = 1 (adamw): β =" in r.stdout
    assert "simulate" in r.stderr  # the progress bar, on stderr
    t = pl.read_parquet(out / "trajectories.parquet")
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["nqm_source"] == source and summary["steps"] == 5000 and summary["seeds"] == 8
    # the default grid 1e-4..1e-1 (13 points), widened a decade at a time while an LR_opt is on its edge
    assert summary["lr_grid_requested"] == pytest.approx(list(np.geomspace(1e-4, 1e-1, 13)))
    assert set(summary["lr_grid_requested"]) <= set(summary["lrs"])
    # then refined twice around the optima
    ext = summary["lr_grid_extensions"]
    assert len(summary["lrs"]) == 13 + sum(len(e["added"]) for e in ext)
    widen = [e for e in ext if e["kind"] == "widen"]
    assert [e["kind"] for e in ext] == ["widen"] * len(widen) + ["zoom"] * (len(ext) - len(widen))
    (g,) = summary["groups"]
    if len(widen) < 3:  # widening stopped because every optimum is interior
        assert all(r["edge"] is None for r in g["per_batch"]) and g["beta_status"] == "predicted"
        assert len(ext) - len(widen) == 2 and "2 halvings of the spacing" in r.stdout
    else:
        assert g["beta_status"] != "predicted" and "⚠" in r.stdout
    if widen:
        assert "widened from 0.0001..0.1" in r.stdout
    assert t.columns == PREDICTION_COLUMNS and t.height == 4 * len(summary["lrs"]) * 8
    assert sorted(t["batch_size"].unique().to_list()) == [32, 64, 128, 256]
    assert (out / "regime_map_clip1.png").stat().st_size > 10_000


def test_json_output_is_pure_json_and_matches_the_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    code, stdout, stderr = main_in_process(monkeypatch, capsys, "predict", "--clip", "1.0", "--clip", "none",
                                           "--out", str(out), "--json", *SMALL_GRID)
    assert code == 0 and stderr == ""  # no progress bar under --json
    printed = json.loads(stdout)
    assert printed == json.loads((out / "prediction.json").read_text())
    assert [g["label"] for g in printed["groups"]] == ["none", "1"]
    assert printed["batch_sizes"] == [8, 32] and len(printed["lrs"]) == 3


def test_a_given_lr_grid_is_not_widened_and_edge_optima_are_flagged(tmp_path, monkeypatch, capsys):
    """--lr given: simulated as given, even with every optimum on its high edge (too low an LR to converge), and β is not
    printed as a prediction."""
    code, stdout, _ = main_in_process(monkeypatch, capsys, "predict", "--out", str(tmp_path / "p"), "--batch", "8,32",
                                      "--lr", "1e-7:2e-7:2", "--steps", "200", "--seeds", "2")
    assert code == 0
    summary = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert summary["lrs"] == pytest.approx([1e-7, 2e-7]) and summary["lr_grid_extensions"] == []
    (g,) = summary["groups"]
    assert all(r["edge"] == "high" for r in g["per_batch"]) and g["beta_status"] == "not_predicted"
    assert "⚠ β not predicted" in stdout and "widen --lr above 2e-07" in stdout and "widened" not in stdout


def test_calibration_file_is_used_and_labelled(tmp_path, monkeypatch, capsys):
    cal = tmp_path / "cal.json"
    NQMParams(d=16, h_max=20.0, alpha=1.5, sigma2=0.5, init_loss=4.0, loss_floor=2.0, init_power=1.0,
              provenance={"source": "calibration", "model": "test"}).save(cal)
    code, stdout, _ = main_in_process(monkeypatch, capsys, "predict", "--calibration", str(cal), "--optimizer", "sgd",
                                      "--out", str(tmp_path / "p"), *SMALL_GRID)
    assert code == 0
    assert "NQM parameters: calibration (d = 16" in stdout and "clip = 1 (sgd)" in stdout
    summary = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert summary["nqm"]["provenance"] == {"source": "calibration", "model": "test", "path": str(cal)}


@pytest.mark.parametrize("optimizer,given,settings", [
    ("sgd", ["--momentum", "0.5", "--weight-decay", "0"], {"momentum": 0.5, "weight_decay": 0.0}),
    ("sgd", ["--momentum", "0"], {"momentum": 0.0, "weight_decay": 0.01}),
    ("adamw", ["--weight-decay", "0.1"], {"momentum": 0.9, "weight_decay": 0.1}),
])
def test_momentum_and_weight_decay_are_simulated_and_recorded(tmp_path, monkeypatch, capsys, optimizer, given,
                                                               settings):
    """--momentum (sgd) and --weight-decay reach the simulator and the summary's optimizer_settings,
    which the table's second line quotes; the other settings keep the trainer's defaults."""
    out = tmp_path / "p"
    code, stdout, err = main_in_process(monkeypatch, capsys, "predict", "--optimizer", optimizer, *given,
                                        "--out", str(out), *SMALL_GRID)
    assert code == 0, err
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["optimizer_settings"] == {"betas": [0.9, 0.999], "eps": 1e-8, "warmup_steps": 0,
                                             "schedule": "constant", **settings}
    words = (f"momentum {float(settings['momentum'])!r}, " if optimizer == "sgd" else "") + \
        f"weight decay {float(settings['weight_decay'])!r}"
    assert stdout.splitlines()[1].startswith(f"{optimizer} ({words}), 200 steps, 2 seeds")
    code, _, _ = main_in_process(monkeypatch, capsys, "predict", "--optimizer", optimizer, "--out",
                                 str(tmp_path / "default"), *SMALL_GRID)
    assert code == 0
    default = pl.read_parquet(tmp_path / "default" / "trajectories.parquet")["final_loss"]
    # the settings changed the simulation, not only the record
    assert not np.allclose(pl.read_parquet(out / "trajectories.parquet")["final_loss"], default)


ERRORS = [
    (["--lr", "1e-1:1e-4:0"], "--lr"),
    (["--lr", "abc"], "--lr"),
    (["--batch", "0"], "--batch"),
    (["--batch", "32,x"], "--batch"),
    (["--clip", "-1"], "--clip"),
    (["--clip", "0"], "--clip"),
    (["--optimizer", "adam"], "unknown optimizer 'adam'"),
    (["--steps", "0"], "--steps"),
    (["--seeds", "0"], "--seeds"),
    (["--calibration", "/nonexistent/cal.json"], "calibration file not found: /nonexistent/cal.json"),
    # sizes that would only exhaust memory or overflow the core's integers: caught before any work
    (["--lr", "1e-3:1e-1:100000000000"], "--lr: count must be in 1..10000"),
    (["--batch", "100000000000000000000"], "--batch: batch sizes must be in 1..1000000000000"),
    (["--steps", "100000001"], "--steps: must be in 1..100000000"),
    (["--steps", "100000000000000000000"], "--steps: must be in 1..100000000"),
    (["--seeds", "9223372036854775807"], "--seeds: must be in 1..10000"),
    (["--out", ""], "--out: empty path"),
    (["--seeds", "10000", "--lr", "1e-4:1e-1:10000"], "--clip x --batch x --lr x --seeds: 400,000,000 trajectories"),
    (["--out", "/proc/pyphase-nosuch/p"], "--out: cannot create /proc/pyphase-nosuch/p"),
    # optimizer settings: momentum in [0, 1) and sgd only, weight decay finite and >= 0
    (["--optimizer", "sgd", "--momentum", "1"], "--momentum: must be finite and >= 0.0 and < 1.0, got 1.0"),
    (["--optimizer", "sgd", "--momentum", "-0.1"], "--momentum: must be finite and >= 0.0 and < 1.0, got -0.1"),
    (["--optimizer", "sgd", "--momentum", "nan"], "--momentum: must be finite and >= 0.0 and < 1.0, got nan"),
    (["--momentum", "0.5"], "--momentum: only sgd has momentum, not --optimizer adamw"),
    (["--optimizer", "adamw", "--momentum", "0"], "--momentum: only sgd has momentum, not --optimizer adamw"),
    (["--weight-decay", "-0.01"], "--weight-decay: must be finite and >= 0.0, got -0.01"),
    (["--optimizer", "sgd", "--weight-decay", "inf"], "--weight-decay: must be finite and >= 0.0, got inf"),
    (["--weight-decay", "nan"], "--weight-decay: must be finite and >= 0.0, got nan"),
]


@pytest.mark.parametrize("args,fragment", ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_user_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, args, fragment):
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--out", str(tmp_path / "p"), *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert not (tmp_path / "p" / "trajectories.parquet").exists()


def test_a_bad_optimizer_setting_is_one_line_from_the_console_script(tmp_path):
    """Through `python -m pyphase`: one `error:` line, exit 2, no traceback, nothing simulated."""
    r = subprocess.run([sys.executable, "-m", "pyphase", "predict", "--optimizer", "sgd", "--momentum", "1.5",
                        "--out", str(tmp_path / "p"), *SMALL_GRID],
                       capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "error: --momentum: must be finite and >= 0.0 and < 1.0, got 1.5\n"
    assert not (tmp_path / "p").exists()


USAGE_ERRORS = [
    (["predict", "--nosuch", "1"], "No such option: --nosuch", "(see 'pyphase predict --help')"),
    (["report"], "Missing argument 'experiments'.", "(see 'pyphase report --help')"),
    (["results", "show"], "Missing argument 'experiment'.", "(see 'pyphase results show --help')"),
    (["predict", "--clip"], "Option '--clip' requires an argument.", ""),
    (["nosuch"], "No such command 'nosuch'.", "(see 'pyphase --help')"),
]


@pytest.mark.parametrize("args,message,see", USAGE_ERRORS, ids=[" ".join(e[0]) for e in USAGE_ERRORS])
def test_usage_errors_are_one_line_exit_2(monkeypatch, capsys, args, message, see):
    """Errors click finds before a command runs (unknown option or command, missing argument or
    value) are one line too, not typer's boxed message, and name the help to read."""
    code, out, err = main_in_process(monkeypatch, capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {message}") and err.endswith(f"{see}\n") and err.count("\n") == 1, err


def test_help_and_a_group_without_its_command_print_help_on_stdout(monkeypatch, capsys):
    code, out, err = main_in_process(monkeypatch, capsys, "--help")
    assert code == 0 and "predict" in out and "train" in out and err == ""
    code, out, err = main_in_process(monkeypatch, capsys, "results")
    assert code == 2 and "show" in out and err == ""


def test_out_that_is_a_file_is_a_user_error(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--out", str(f), *SMALL_GRID)
    assert code == 2 and "--out" in err and err.count("\n") == 1


def test_malformed_calibration_is_a_user_error(tmp_path, monkeypatch, capsys):
    cal = tmp_path / "cal.json"
    cal.write_text('{"format": "pyphase.nqm", "d": 8}')
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--calibration", str(cal), *SMALL_GRID)
    assert code == 2 and "missing" in err and err.count("\n") == 1


def test_calibration_beyond_the_simulators_limits_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    for name, d, alpha, told in (("big_d", 10_000_000, 1.0, "d must be in 1..=1048576"),
                                 ("underflow", 1000, 300.0, "spectrum underflows")):
        cal = tmp_path / f"{name}.json"
        cal.write_text(json.dumps({"format": "pyphase.nqm", "version": 1, "d": d, "h_max": 1.0, "alpha": alpha,
                                   "sigma2": 0.1, "init_loss": 2.0, "loss_floor": 1.0, "provenance": {"source": "t"}}))
        code, _, err = main_in_process(monkeypatch, capsys, "predict", "--calibration", str(cal), *SMALL_GRID)
        assert code == 2 and err == f"error: calibration file {cal}: {told}" + err.split(told, 1)[1], err
        assert err.count("\n") == 1 and "simulate" not in err  # no progress bar: nothing was simulated


def test_clips_with_the_same_short_label_keep_their_own_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    code, _, _ = main_in_process(monkeypatch, capsys, "predict", "--clip", "1e-7", "--clip", "1.00000001e-7",
                                 "--out", str(out), *SMALL_GRID)
    assert code == 0
    summary = json.loads((out / "prediction.json").read_text())
    assert [g["label"] for g in summary["groups"]] == ["1e-07", "1.00000001e-07"]
    assert sorted(p.name for p in out.glob("regime_map_*.png")) == ["regime_map_clip1.00000001e-07.png",
                                                                     "regime_map_clip1e-07.png"]


def test_version_flag(monkeypatch, capsys):
    from pyphase import __version__

    code, out, err = main_in_process(monkeypatch, capsys, "--version")
    assert code == 0 and out == f"pyphase {__version__}\n" and err == ""


def test_reusing_out_removes_the_earlier_predictions_regime_maps_only(tmp_path, monkeypatch, capsys):
    out = tmp_path / "p2"
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--clip", "1", "--clip", "10", "--clip", "none",
                                   "--out", str(out), *SMALL_GRID)
    assert code == 0 and "earlier prediction" not in err
    assert sorted(p.name for p in out.glob("regime_map_*.png")) == [
        "regime_map_clip1.png", "regime_map_clip10.png", "regime_map_clipnone.png"]
    # files pyphase did not list stay, whatever their names
    (out / "mine.png").write_bytes(b"x")
    (out / "regime_map_clip3.png").write_bytes(b"x")
    (out / "notes.txt").write_text("keep")
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--clip", "1", "--out", str(out), *SMALL_GRID)
    assert code == 0
    summary = json.loads((out / "prediction.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([*summary["files"].values(), "mine.png",
                                                            "regime_map_clip3.png", "notes.txt"])
    assert sorted(p.name for p in out.glob("regime_map_*.png")) == ["regime_map_clip1.png", "regime_map_clip3.png"]
    notes = [line for line in err.splitlines() if "earlier prediction" in line]
    assert notes == [f"note: --out {out} held an earlier prediction; replaced it and removed its regime maps this "
                     "one does not write: regime_map_clip10.png, regime_map_clipnone.png"]
    # a prediction.json that pyphase did not write lists nothing pyphase may delete
    (out / "prediction.json").write_text(json.dumps({"files": {"m": "mine.png", "n": "regime_map_clip3.png"}}))
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--clip", "10", "--out", str(out), *SMALL_GRID)
    assert code == 0 and "earlier prediction" not in err
    assert all((out / n).exists() for n in ("mine.png", "regime_map_clip3.png", "regime_map_clip1.png"))


def test_ctrl_c_while_simulating_leaves_no_out_folder(tmp_path, monkeypatch, capsys):
    """--out is checked before simulating (an unwritable one fails at once, as above), but a folder
    made for the check is not left behind: Ctrl-C during the simulation leaves nothing."""
    import pyphase.predict as P

    def interrupted(*args, **kwargs):
        assert not (tmp_path / "a").exists()  # nothing made while simulating
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "predict", interrupted)
    code, out, err = main_in_process(monkeypatch, capsys, "predict", "--out", str(tmp_path / "a" / "b"), *SMALL_GRID)
    assert (code, out) == (130, "") and err.endswith("pyphase: interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_that_cannot_be_written_in_is_refused_before_simulating(tmp_path, monkeypatch, capsys):
    import os

    import pyphase.predict as P

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(P, "predict", lambda *a, **k: pytest.fail("simulated"))
    monkeypatch.setattr(os, "access", lambda path, mode, **k: Path(path) != locked)
    code, _, err = main_in_process(monkeypatch, capsys, "predict", "--out", str(locked), *SMALL_GRID)
    assert code == 2 and err == f"error: --out: cannot write in {locked} (permission denied)\n"


# --------------------------------------------------------------------------- calibration values past fixed-size numbers
def _cal_with(tmp_path, **change) -> Path:
    """The built-in parameters as a calibration file (the format `pyphase calibrate` writes), changed."""
    cal = tmp_path / "badcal.json"
    cal.write_text(json.dumps({**NQMParams.builtin().to_dict(), **change}))
    return cal


def _predict_process(tmp_path, cal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyphase", "predict", "--calibration", str(cal), "--batch", "4,8",
                           "--steps", "10", "--seeds", "1", "--lr", "1e-3,1e-2", "--out", str(tmp_path / "pbad")],
                          capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("change,fragment", [
    # past int64: "OverflowError: Python int too large to convert to C long" from the simulator's binding
    ({"d": 10**30}, "d must be in 1..=1048576, got an integer of 31 digits"),
    ({"d": 1e30}, "d must be in 1..=1048576"),
    # past float64: math.isfinite's OverflowError "int too large to convert to float"
    ({"h_max": 10**400}, "h_max must be a finite number, got an integer of 401 digits"),
    ({"sigma2": 10**400}, "sigma2 must be a finite number"),
    # finite, but the spectrum's sums overflow: θ(0) = 0 and B_simple = inf; predict wrote every output
    # and then crashed formatting B_simple (None in the JSON)
    ({"h_max": 1e308}, "the start θ(0) is degenerate: |G(θ0)| = 0, tr(Σ) = 3.19e+306, B_simple = inf"),
    ({"sigma2": 1e308}, "the start θ(0) is degenerate"),
], ids=["d-1e30-int", "d-1e30-float", "h_max-1e400-int", "sigma2-1e400-int", "h_max-1e308", "sigma2-1e308"])
def test_a_calibration_past_fixed_size_numbers_is_one_line_exit_2_and_writes_nothing(tmp_path, change, fragment):
    cal = _cal_with(tmp_path, **change)
    r = _predict_process(tmp_path, cal)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: calibration file {cal}: "), r.stderr
    assert fragment in r.stderr and "Traceback" not in r.stderr and "simulate" not in r.stderr
    assert not (tmp_path / "pbad").exists()


def test_a_large_finite_h_max_still_predicts(tmp_path, monkeypatch, capsys):
    """Refused is only a start the closed forms cannot describe: h_max = 1e200 is a (stiff) model whose
    every LR diverges, and predict says so."""
    cal = _cal_with(tmp_path, h_max=1e200)
    code, out, err = main_in_process(monkeypatch, capsys, "predict", "--calibration", str(cal), "--batch", "4,8",
                                     "--steps", "10", "--seeds", "1", "--lr", "1e-3,1e-2", "--out",
                                     str(tmp_path / "p"))
    assert code == 0, err
    assert "B_simple = 1.88e+03" in out and "every LR diverged" in out


def test_an_unserved_allocation_anywhere_is_one_line(tmp_path, monkeypatch, capsys):
    """The CLI's last resort for an allocation failure no command worded (here numpy's MemoryError)."""
    import pyphase.predict

    def refuse(*args, **kwargs):
        raise MemoryError("Unable to allocate 9.31 GiB for an array with shape (1250000000,) and data type float64")

    monkeypatch.setattr(pyphase.predict, "predict", refuse)
    code, out, err = main_in_process(monkeypatch, capsys, "predict", *SMALL_GRID, "--out", str(tmp_path / "p"))
    assert (code, out) == (2, "")
    assert err == "error: out of memory: an allocation of 9.31 GiB failed\n"
