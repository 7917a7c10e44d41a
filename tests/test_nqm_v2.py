"""The radial (scale-invariance) part of the NQM: calibration-file format version 2, backward
compatibility with version 1, the simulator's radial keywords and ρ, and predict's radial summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyphase import _core, nqm
from pyphase.errors import PyphaseError
from pyphase.nqm import NQMParams
from pyphase.predict import predict

PLAIN = NQMParams(d=48, h_max=20.0, alpha=1.2, sigma2=0.05, init_loss=4.0, loss_floor=1.5, init_power=0.5,
                  provenance={"source": "test"})
RADIAL = NQMParams(**{k: getattr(PLAIN, k) for k in nqm.FIELDS}, si_fraction=0.75, si_params=3.0e5,
                   si_init_norm=6.0, provenance={"source": "test+radial"})


def test_radial_params_round_trip_as_version_2(tmp_path):
    p = tmp_path / "r.json"
    RADIAL.save(p)
    obj = json.loads(p.read_text())
    assert obj["version"] == 2 and {obj[k] for k in nqm.RADIAL_FIELDS} == {0.75, 3.0e5, 6.0}
    back = NQMParams.load(p)
    assert back == RADIAL and back.radial and not PLAIN.radial
    assert back.core_kwargs() == {**PLAIN.core_kwargs(), "si_fraction": 0.75, "si_params": 3.0e5, "si_init_norm": 6.0}


def test_version_1_file_loads_and_simulates_exactly_as_before(tmp_path):
    p = tmp_path / "v1.json"
    PLAIN.save(p)
    obj = json.loads(p.read_text())
    assert obj["version"] == 1 and not set(nqm.RADIAL_FIELDS) & set(obj)
    back = NQMParams.load(p)
    assert not back.radial and set(back.core_kwargs()) == set(nqm.FIELDS)
    args = {"batch_size": [8, 64], "lr": [1e-3, 3e-2], "clip": [1.0, 1.0], "seeds": [0, 1], "steps": 300}
    old = _core.simulate(**{k: getattr(PLAIN, k) for k in nqm.FIELDS}, **args)  # the version-1 call
    new = _core.simulate(**back.core_kwargs(), **args)
    for k in old:
        np.testing.assert_array_equal(old[k], new[k], err_msg=k)
    assert np.all(new["rho_final"] == 1.0)


def test_shipped_default_calibration_is_still_the_plain_model():
    assert not NQMParams.default().radial


@pytest.mark.parametrize(
    "change,message",
    [
        ({"si_fraction": 0.5, "version": 1}, "need version 2"),
        ({"si_fraction": 0.5, "version": 2}, "must be given together"),
        ({"si_fraction": 1.5, "si_params": 10.0, "si_init_norm": 1.0, "version": 2}, "si_fraction must be in [0, 1]"),
        ({"si_fraction": 0.5, "si_params": 0.0, "si_init_norm": 1.0, "version": 2}, "si_params must be >= 1"),
        ({"si_fraction": 0.5, "si_params": 10.0, "si_init_norm": -1.0, "version": 2}, "si_init_norm must be > 0"),
        ({"si_fraction": "x", "si_params": 10.0, "si_init_norm": 1.0, "version": 2}, "si_fraction must be a finite"),
    ],
)
def test_bad_radial_fields_are_one_line_user_errors(tmp_path, change, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({**PLAIN.to_dict(), **change}))
    with pytest.raises(PyphaseError) as e:
        NQMParams.load(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_core_rejects_partial_or_bad_radial_arguments_with_value_error():
    base = {k: getattr(PLAIN, k) for k in nqm.FIELDS}
    args = {"batch_size": [8], "lr": [1e-3], "clip": [1.0], "seeds": [0], "steps": 10}
    with pytest.raises(ValueError, match="must be given together"):
        _core.simulate(**base, si_fraction=0.5, **args)
    with pytest.raises(ValueError, match="si_init_norm must be finite and > 0, got 0"):
        _core.simulate(**base, si_fraction=0.5, si_params=10.0, si_init_norm=0.0, **args)
    with pytest.raises(ValueError, match="si_fraction must be in"):
        _core.nqm_describe(**base, si_fraction=2.0, si_params=10.0, si_init_norm=1.0)


def test_describe_marks_the_scale_invariant_directions():
    out = _core.nqm_describe(**RADIAL.core_kwargs())
    si = out["scale_invariant"]
    assert si.sum() == 36 and si.dtype == bool  # ⌊48 · 0.75⌋
    # spread over the spectrum: every 4 consecutive directions hold 3
    assert all(si[i:i + 4].sum() == 3 for i in range(0, 48, 4))
    # the closed forms at θ(0) are the plain model's (ρ(0) = 1)
    assert RADIAL.describe() == PLAIN.describe()


def test_rho_grows_with_lr_and_the_clipped_gradient_shrinks():
    args = {"batch_size": [16] * 3, "lr": [1e-4, 1e-3, 1e-2], "clip": [1.0] * 3, "seeds": [0, 1], "steps": 2000}
    r = _core.simulate(**RADIAL.core_kwargs(), **args)
    p = _core.simulate(**PLAIN.core_kwargs(), **args)
    rho = r["rho_final"].reshape(3, 2).mean(axis=1)
    assert 1.0 < rho[0] < rho[1] < rho[2]
    g_r = r["grad_norm_before"].reshape(3, 2).mean(axis=1)
    g_p = p["grad_norm_before"].reshape(3, 2).mean(axis=1)
    assert g_r[2] < g_p[2]
    # step-resolved: ρ_t is non-decreasing while weight decay is negligible against the growth
    t = _core.simulate_trajectory(**RADIAL.core_kwargs(), batch_size=16, lr=1e-2, clip=1.0, seed=0, steps=200,
                                  weight_decay=0.0)
    assert t["rho_steps"][0] == 1.0 and np.all(np.diff(t["rho_steps"]) >= 0)
    assert t["rho_final"][0] == t["rho_steps"][-1]


def test_predict_reports_rho_per_config_only_for_radial_models():
    kw = {"clips": [1.0], "batches": [8, 64], "lrs": [1e-3, 1e-2], "steps": 200, "seeds": 2, "n_boot": 20, "progress": False}
    plain = predict(params=PLAIN, **kw)
    assert "radial" not in plain.summary
    rad = predict(params=RADIAL, **kw)
    rows = rad.summary["radial"]["rho_final"]
    assert len(rows) == 4 and all(r["rho_final"] >= 1.0 for r in rows)
    assert all(r["si_norm_final"] == pytest.approx(r["rho_final"] * 6.0) for r in rows)
    assert rad.summary["nqm"]["version"] == 2 and plain.summary["nqm"]["version"] == 1
