"""`pyphase calibrate --radial-base`: the scale-invariant group of the NanoTransformer, its
measurement, and the version-2 calibration file it writes (tiny shape, synthetic corpus, CPU)."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from pyphase import nqm
from pyphase.calibrate import (
    RESIDUAL_WRITERS,
    SHAPES,
    add_scale_invariance,
    fit_growth_law,
    parse_float_list,
    scale_invariant_names,
)
from pyphase.cli import app
from pyphase.errors import PyphaseError
from pyphase.model import Shape
from pyphase.nqm import NQMParams

FAST = {"batch_sizes": (2, 4), "repeats": 2, "steps": 3, "lr": 3e-3, "progress": False}


def _base(tmp_path, **prov):
    p = tmp_path / "base.json"
    NQMParams(d=64, h_max=10.0, alpha=1.0, sigma2=0.1, init_loss=4.0, loss_floor=1.5,
              provenance={"source": "calibration", "shape": {"name": "tiny"}, "options": {"seed": 0}, **prov}).save(p)
    return p


def test_scale_invariant_group_is_the_residual_writers():
    sh = Shape.of(SHAPES["default"], 65)
    names = scale_invariant_names(sh)
    assert {n.split(".")[-1] for n in names} == set(RESIDUAL_WRITERS)
    assert len(names) == 2 + 4 * 4  # wte, wpe + 4 leaves per block
    n = sum(s[0] * (s[1] if len(s) > 1 else 1) for k, s in sh.param_shapes() if k in names)
    assert n == 369_792


def test_radial_measurement_writes_a_version_2_file_that_is_invariant(tmp_path):
    out = tmp_path / "radial.json"
    params, si = add_scale_invariance(_base(tmp_path), out=out, **FAST)
    assert max(si.invariance.values()) < 1e-3  # the group really is scale-invariant
    assert max(si.rest_sensitivity.values()) > 1e-2  # and the control is not
    assert 0.0 < si.grad_share < 1.0 and params.si_fraction == si.grad_share
    back = NQMParams.load(out)
    assert back == params and back.radial and json.loads(out.read_text())["version"] == 2
    assert back.si_params == si.si_params and back.si_init_norm == pytest.approx(si.si_init_norm)
    assert {k: getattr(back, k) for k in nqm.FIELDS} == {k: getattr(NQMParams.load(_base(tmp_path)), k)
                                                         for k in nqm.FIELDS}
    assert back.source == "calibration+radial" and "AFTER the sweeps" in back.provenance["radial"]["description"]
    assert len(si.run["si_norm"]) == 4 and si.run["update_rms_si"] > 0


def test_radial_measurement_is_deterministic(tmp_path):
    a = add_scale_invariance(_base(tmp_path), **FAST)[1]
    b = add_scale_invariance(_base(tmp_path), **FAST)[1]
    assert a.grad_share == b.grad_share and a.si_init_norm == b.si_init_norm


def test_growth_law_runs_write_a_version_3_file_fitted_to_them(tmp_path):
    out = tmp_path / "grown.json"
    params, si = add_scale_invariance(_base(tmp_path), out=out, **{**FAST, "growth_lrs": (1e-3, 3e-3, 1e-2)})
    obj = json.loads(out.read_text())
    assert obj["version"] == 3 and NQMParams.load(out) == params and params.growth_law
    g = si.growth
    runs = g["runs"]
    assert [r["lr"] for r in runs] == [1e-3, 3e-3, 1e-2] and all(len(r["si_norm"]) == FAST["steps"] + 1 for r in runs)
    for r in runs:  # every run starts from the same initial weights
        assert r["si_norm"][0] == si.si_init_norm
        n = r["si_norm"]
        assert r["si_norm2_growth_per_step"] == pytest.approx((n[-1] ** 2 - n[0] ** 2) / FAST["steps"], rel=1e-12)
    fit = fit_growth_law([r["lr"] for r in runs], [r["si_norm2_growth_per_step"] for r in runs])
    assert (params.si_growth_coef, params.si_growth_power) == (fit["coef"], fit["power"])
    # the run at --lr is one of them, and adding the other LRs leaves the version-2 measurement unchanged
    assert runs[1]["si_norm"] == si.run["si_norm"]
    v2_params, v2 = add_scale_invariance(_base(tmp_path), **FAST)
    assert v2.run["si_norm"] == si.run["si_norm"] and v2.growth is None and not v2_params.growth_law
    assert {k: getattr(v2_params, k) for k in nqm.RADIAL_FIELDS} == {k: getattr(params, k) for k in nqm.RADIAL_FIELDS}


@pytest.mark.parametrize(
    "kw,prov,message",
    [
        ({"repeats": 1}, {}, "--repeats: must be >= 2"),
        ({"batch_sizes": (3, 4)}, {}, "--batch"),
        ({"steps": 0}, {}, "--radial-steps: must be >= 1"),
        ({"lr": -1.0}, {}, "--lr: must be finite and > 0, got -1.0"),
        ({"growth_lrs": (1e-3,)}, {}, "--radial-lrs: the growth law needs two or more distinct"),
        ({"growth_lrs": (1e-3, -1.0)}, {}, "--radial-lrs: learning rates must be positive numbers, got -1.0"),
        ({}, {"data": {"sha256": "0" * 64}}, "differs from the calibration's"),
        # past int64 (or the trainer's bounds): OverflowError tracebacks from the batcher or torch before
        ({"repeats": 10**20}, {}, "--repeats: must be <= 100,000, got 100,000,000,000,000,000,000"),
        ({"steps": 10**20}, {}, "--radial-steps: must be <= 10,000,000"),
        ({"run_batch": 10**20}, {}, "--run-batch: must be <= 1,048,576"),
        ({"batch_sizes": (2, 4 * 10**20)}, {}, "--batch: batch sizes must be <= 1,048,576"),
        ({"lr": 1e300}, {}, "--lr: must be in [1.175494e-38, 3.402823e+38]"),
        ({"growth_lrs": (1e-3, 1e300)}, {}, "--radial-lrs: must be in [1.175494e-38, 3.402823e+38]"),
        ({}, {"options": {"seed": 10**20}}, "provenance.options.seed must be an integer in 0..2147483647"),
        ({}, {"options": {"seed": "zero"}}, "provenance.options.seed must be an integer in 0..2147483647, got 'zero'"),
    ],
)
def test_bad_radial_options_are_one_line_errors(tmp_path, kw, prov, message):
    with pytest.raises(PyphaseError) as e:
        add_scale_invariance(_base(tmp_path, **prov), **{**FAST, **kw})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_radial_mode_and_its_exit_code(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["calibrate", "--radial-base", str(_base(tmp_path)), "--device", "cpu", "--batch",
                                 "2,4", "--repeats", "2", "--radial-steps", "2", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "scale-invariant group" in r.output and NQMParams.load(out).radial
    assert "growth" in r.output and NQMParams.load(out).growth_law  # the default --radial-lrs fits a law
    r = CliRunner().invoke(app, ["calibrate", "--radial-base", str(_base(tmp_path)), "--device", "cpu", "--batch",
                                 "2,4", "--repeats", "2", "--radial-steps", "2", "--radial-lrs", "none", "--out",
                                 str(out), "--no-progress"])
    assert r.exit_code == 0 and json.loads(out.read_text())["version"] == 2
    r = CliRunner().invoke(app, ["calibrate", "--radial-base", str(_base(tmp_path)), "--radial-lrs", "0.001,x"])
    # (main() turns a PyphaseError into one line and exit code 2, tested below)
    assert isinstance(r.exception, PyphaseError) and "--radial-lrs: expected comma-separated numbers" in str(r.exception)
    assert parse_float_list("0.001, 0.01", "--radial-lrs") == [0.001, 0.01]
    from pyphase.cli import main

    monkeypatch.setattr(sys, "argv", ["pyphase", "calibrate", "--radial-base", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "calibration file not found" in err and "\n" not in err
