"""The radial part's measured growth law (calibration-file format version 3): the file format and its
backward compatibility with versions 1 and 2, the simulator's growth-law keywords (ρ in closed
form), the fit behind `pyphase calibrate --radial-lrs`, and version 2's behaviour kept bit for bit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pyphase import _core, nqm
from pyphase.calibrate import fit_growth_law
from pyphase.errors import PyphaseError
from pyphase.nqm import NQMParams
from pyphase.predict import predict

REPO = Path(__file__).resolve().parents[1]
PLAIN = NQMParams(d=48, h_max=20.0, alpha=1.2, sigma2=0.05, init_loss=4.0, loss_floor=1.5, init_power=0.5,
                  provenance={"source": "test"})
RADIAL = NQMParams(**{k: getattr(PLAIN, k) for k in nqm.FIELDS}, si_fraction=0.75, si_params=3.0e5,
                   si_init_norm=6.0, provenance={"source": "test+radial"})
GROWN = dataclasses.replace(RADIAL, si_growth_coef=250.0, si_growth_power=1.4)


def test_growth_law_round_trips_as_version_3_and_older_sets_keep_their_version(tmp_path):
    for params, version in ((PLAIN, 1), (RADIAL, 2), (GROWN, 3)):
        p = tmp_path / f"v{version}.json"
        params.save(p)
        obj = json.loads(p.read_text())
        assert obj["version"] == version
        assert ({"si_growth_coef", "si_growth_power"} <= set(obj)) == (version == 3)
        back = NQMParams.load(p)
        assert back == params and back.growth_law == (version == 3)
    assert GROWN.core_kwargs() == {**RADIAL.core_kwargs(), "si_growth_coef": 250.0, "si_growth_power": 1.4}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"version": 2}, "need version 3, the file says version 2"),
        ({"si_growth_power": None}, "must be given together"),
        ({"si_growth_coef": -1.0}, "si_growth_coef must be >= 0"),
        ({"si_growth_power": 5.0}, "si_growth_power must be in [0, 4], got 5.0"),
        ({"si_growth_coef": "a lot"}, "si_growth_coef must be a finite number"),
        ({"si_fraction": None, "si_params": None, "si_init_norm": None}, "need the radial part"),
    ],
)
def test_bad_growth_fields_are_one_line_user_errors(tmp_path, change, message):
    obj = {**GROWN.to_dict(), **change}
    obj = {k: v for k, v in obj.items() if v is not None}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(PyphaseError) as e:
        NQMParams.load(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_core_rejects_partial_or_bad_growth_arguments_with_value_error():
    base = {**RADIAL.core_kwargs(), "batch_size": [8], "lr": [1e-3], "clip": [1.0], "seeds": [0], "steps": 5}
    for extra, msg in (({"si_growth_coef": 1.0}, "given together"),
                       ({"si_growth_coef": 1.0, "si_growth_power": -0.5}, r"si_growth_power must be in \[0, 4\], got -0.5"),
                       ({"si_growth_coef": float("nan"), "si_growth_power": 1.0}, "si_growth_coef")):
        with pytest.raises(ValueError, match=msg):
            _core.simulate(**base, **extra)
    plain = {**PLAIN.core_kwargs(), "batch_size": [8], "lr": [1e-3], "clip": [1.0], "seeds": [0], "steps": 5}
    with pytest.raises(ValueError, match="need the radial part"):
        _core.simulate(**plain, si_growth_coef=1.0, si_growth_power=1.0)


def test_rho_follows_the_growth_law_in_closed_form_at_every_batch_and_clip():
    # ρ²_{t+1} = a ρ²_t + b, a = (1 − lr·wd)², b = coef·lr^power / si_init_norm²
    steps, wd = 400, 0.01
    for b, lr, clip in ((8, 1e-3, 1.0), (256, 1e-3, None), (32, 1e-2, 0.1)):
        out = _core.simulate_trajectory(**GROWN.core_kwargs(), batch_size=b, lr=lr, clip=clip, seed=3, steps=steps,
                                        weight_decay=wd)
        a = (1 - lr * wd) ** 2
        c = GROWN.si_growth_coef * lr ** GROWN.si_growth_power / GROWN.si_init_norm ** 2
        t = np.arange(steps + 1)
        want = np.sqrt(a ** t + c * (1 - a ** t) / (1 - a))
        np.testing.assert_allclose(out["rho_steps"], want, rtol=1e-12)
        assert out["rho_final"][0] == out["rho_steps"][-1]


def test_predict_reports_the_growth_law_and_rho_grows_with_lr():
    res = predict([1.0], batches=[16], lrs=[1e-3, 1e-2], steps=300, seeds=2, params=GROWN, progress=False)
    rad = res.summary["radial"]
    assert (rad["si_growth_coef"], rad["si_growth_power"]) == (250.0, 1.4)
    rho = {r["lr"]: r["rho_final"] for r in rad["rho_final"]}
    assert rho[1e-2] > rho[1e-3] > 1.0
    v2 = predict([1.0], batches=[16], lrs=[1e-3], steps=50, seeds=1, params=RADIAL, progress=False)
    assert "si_growth_coef" not in v2.summary["radial"]


def test_fit_growth_law_recovers_an_exact_power_law_and_rejects_what_it_cannot_fit():
    lrs = [1e-3, 3e-3, 1e-2]
    fit = fit_growth_law(lrs, [7.0 * x ** 1.25 for x in lrs])
    assert fit["coef"] == pytest.approx(7.0, rel=1e-9) and fit["power"] == pytest.approx(1.25, rel=1e-9)
    assert fit["residual_rms"] < 1e-9
    for lr_list, growth, msg in (([1e-3, 1e-3], [1.0, 2.0], "two or more distinct"),
                                 (lrs, [1.0, -0.1, 2.0], "did not grow")):
        with pytest.raises(PyphaseError, match=msg):
            fit_growth_law(lr_list, growth)


@pytest.mark.slow
def test_version_2_calibration_still_gives_the_committed_v2_predictions():
    """The shipped version-2 file, run through today's code on phase3b's grid, reproduces the committed
    results/predictions_v2/phase3b trajectories bit for bit (made before the growth law existed)."""
    committed = REPO / "results" / "predictions_v2" / "phase3b" / "trajectories.parquet"
    params = NQMParams.load(REPO / "pyphase" / "calibrations" / "h100_radial_cpu.json")
    assert not params.growth_law
    res = predict([None, 0.1, 1.0, 10.0], batches=[32, 256], lrs=[0.001, 0.05], steps=5000, seeds=8,
                  params=params, progress=False)
    new = res.table.sort("clip", "batch_size", "lr", "seed", nulls_last=True)
    old = pl.read_parquet(committed).sort("clip", "batch_size", "lr", "seed", nulls_last=True)
    assert new.columns == old.columns
    assert new.equals(old, null_equal=True)
