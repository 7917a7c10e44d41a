"""The NQM engine (`pyphase._core` simulator) against closed forms and torch: noise-free SGD is
(1 − ηh)^t, noisy SGD's stationary loss is the NQM formula, AdamW/SGD steps equal torch.optim's on
the same gradients (also end to end through clip_grad_norm_ on the NQM loss), clip frequency limits,
the clipped norm bound, thread-count independence, and ValueError for every bad argument."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
import torch

from pyphase import _core

MODEL = {"d": 24, "h_max": 2.0, "alpha": 1.0, "sigma2": 1.0, "init_loss": 3.0, "loss_floor": 1.0}


def sim(**kw):
    args = dict(MODEL, seeds=[0], steps=200)
    args.update(kw)
    return _core.simulate(**args)


def traj(**kw):
    args = dict(MODEL, batch_size=8, lr=0.01, clip=None, seed=0, steps=100)
    args.update(kw)
    return _core.simulate_trajectory(**args)


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("precision,tol", [("f64", 1e-12), ("f32", 2e-5)])
def test_noise_free_sgd_equals_closed_form(precision, tol):
    lr, steps = 0.6, 150
    r = traj(sigma2=0.0, lr=lr, steps=steps, optimizer="sgd", momentum=0.0, weight_decay=0.0, precision=precision)
    desc = _core.nqm_describe(**MODEL)
    h, th0 = desc["spectrum"], desc["theta0"]
    np.testing.assert_allclose(r["theta_final"], (1 - lr * h) ** steps * th0, rtol=tol, atol=tol * th0.max())
    t = np.arange(steps + 1)[:, None]
    want = MODEL["loss_floor"] + 0.5 * (h * ((1 - lr * h) ** t * th0) ** 2).sum(axis=1)
    np.testing.assert_allclose(r["loss"], want, rtol=tol)


def test_noisy_sgd_stationary_loss_matches_nqm_closed_form():
    # Plain SGD on the NQM: E[θ_i²] → η σ² h_i / (B h_i (2 − η h_i)), so
    # E[L] − L_min = Σ ½ h_i E[θ_i²] = Σ η σ² h_i / (2 B (2 − η h_i)).
    m = dict(MODEL, d=8, h_max=1.0, sigma2=2.0)
    lr, b, n_seeds = 0.5, 4, 96
    out = _core.simulate(**m, batch_size=[b], lr=[lr], clip=[None], seeds=list(range(n_seeds)), steps=2000,
                         optimizer="sgd", momentum=0.0, weight_decay=0.0, precision="f64")
    h = _core.nqm_describe(**m)["spectrum"]
    want = float(np.sum(lr * m["sigma2"] * h / (2 * b * (2 - lr * h))))
    x = out["final_loss"] - m["loss_floor"]
    se = x.std(ddof=1) / math.sqrt(n_seeds)
    assert abs(x.mean() - want) < 4 * se, (x.mean(), se, want)
    assert 0.1 * want > 4 * se  # power: a 10% error in the noise variance would fail the test


def test_nqm_describe_closed_forms():
    for init_power in (0.0, 1.0, 1.5):
        d = _core.nqm_describe(**MODEL, init_power=init_power)
        h, th = d["spectrum"], d["theta0"]
        np.testing.assert_allclose(h, 2.0 / np.arange(1, 25))
        assert MODEL["loss_floor"] + 0.5 * np.sum(h * th**2) == pytest.approx(MODEL["init_loss"], rel=1e-12)
        np.testing.assert_allclose(th / th[0], (h / h[0]) ** (-init_power / 2), rtol=1e-12)
        g2 = np.sum((h * th) ** 2)
        assert d["init_grad_norm"] == pytest.approx(math.sqrt(g2), rel=1e-12)
        assert d["trace_sigma"] == pytest.approx(MODEL["sigma2"] * h.sum(), rel=1e-12)
        assert d["b_simple"] == pytest.approx(MODEL["sigma2"] * h.sum() / g2, rel=1e-12)


# --------------------------------------------------------------------------- torch equivalence
@pytest.mark.parametrize("clip", [None, 0.5, 3.0])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.3])
def test_adamw_reference_equals_torch(clip, weight_decay):
    rng = np.random.default_rng(1)
    steps, d = 60, 7
    grads = rng.normal(size=(steps, d)) * np.linspace(0.01, 3.0, steps)[:, None]
    theta0 = rng.normal(size=d)
    lr, betas, eps = 0.03, (0.85, 0.99), 1e-6
    ours = _core.adamw_reference(grads, theta0, lr, betas=betas, eps=eps, weight_decay=weight_decay, clip=clip)
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    want = [theta0.copy()]
    clipped = 0
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        if clip is not None:
            clipped += float(torch.nn.utils.clip_grad_norm_([p], clip)) > clip
        opt.step()
        want.append(p.detach().numpy().copy())
    np.testing.assert_allclose(ours, np.array(want), rtol=1e-6, atol=1e-9)
    if clip is not None:
        assert clipped > 0  # the clipping path was exercised


@pytest.mark.parametrize("clip", [None, 1.0])
def test_sgd_reference_equals_torch(clip):
    rng = np.random.default_rng(2)
    grads, theta0 = rng.normal(size=(40, 5)), rng.normal(size=5)
    ours = _core.sgd_reference(grads, theta0, 0.05, momentum=0.9, weight_decay=0.1, clip=clip)
    p = torch.nn.Parameter(torch.tensor(theta0))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9, weight_decay=0.1)
    want = [theta0.copy()]
    for g in grads:
        p.grad = torch.tensor(g)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        want.append(p.detach().numpy().copy())
    np.testing.assert_allclose(ours, np.array(want), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_engine_equals_torch_on_the_noise_free_nqm(optimizer):
    """The fused sweep kernel, not just the reference: torch trains the same quadratic with autograd,
    clip_grad_norm_ and torch.optim, with a threshold that clips the early steps only."""
    m = dict(MODEL, sigma2=0.0, init_power=0.5)
    lr, clip, steps = (0.05, 0.8, 120) if optimizer == "adamw" else (0.2, 0.8, 120)
    kw = {"betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.05, "momentum": 0.7}
    r = _core.simulate_trajectory(**m, batch_size=1, lr=lr, clip=clip, seed=0, steps=steps, optimizer=optimizer,
                                  precision="f64", **kw)
    desc = _core.nqm_describe(**m)
    h = torch.tensor(desc["spectrum"])
    p = torch.nn.Parameter(torch.tensor(desc["theta0"]))
    if optimizer == "adamw":
        opt = torch.optim.AdamW([p], lr=lr, betas=kw["betas"], eps=kw["eps"], weight_decay=kw["weight_decay"])
    else:
        opt = torch.optim.SGD([p], lr=lr, momentum=kw["momentum"], weight_decay=kw["weight_decay"])
    losses, norms = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = m["loss_floor"] + 0.5 * (h * p * p).sum()
        loss.backward()
        losses.append(loss.item())
        norms.append(float(torch.nn.utils.clip_grad_norm_([p], clip)))
        opt.step()
    losses.append(m["loss_floor"] + 0.5 * float((h * p.detach() ** 2).sum()))
    assert sum(n > clip for n in norms) >= 3 and norms[-1] < clip  # clipped, then not
    np.testing.assert_allclose(r["loss"], losses, rtol=1e-7)
    np.testing.assert_allclose(r["grad_norm_before_steps"], norms, rtol=1e-7)
    np.testing.assert_allclose(r["theta_final"], p.detach().numpy(), rtol=1e-6, atol=1e-10)
    assert r["clip_frequency"][0] == pytest.approx(np.mean(np.array(norms) > clip))


# --------------------------------------------------------------------------- clipping
def test_clip_frequency_tends_to_zero_and_one():
    for opt, lr in (("adamw", 0.01), ("sgd", 0.05)):
        out = sim(batch_size=[4, 4, 4], lr=[lr] * 3, clip=[1e9, 1e-9, None], seeds=[0, 1], optimizer=opt)
        freq = out["clip_frequency"].reshape(3, 2)
        assert (freq[0] == 0).all() and (freq[1] == 1).all() and (freq[2] == 0).all()
        scale = out["clip_scale"].reshape(3, 2)
        assert (scale[0] == 1).all() and (scale[1] < 1e-6).all()


def test_clipped_gradient_norm_never_exceeds_threshold():
    for opt, lr in (("adamw", 0.05), ("sgd", 0.3)):
        for c in (0.05, 0.5, 2.0):
            r = traj(sigma2=4.0, batch_size=2, lr=lr, clip=c, optimizer=opt, steps=400, precision="f32")
            after, before = r["grad_norm_after_steps"], r["grad_norm_before_steps"]
            assert after.max() <= c and (after <= before).all()
            assert r["grad_norm_after"][0] <= c
            clipped = before > c
            assert clipped.any()
            np.testing.assert_allclose(after[clipped], c, rtol=1e-5)  # clipped steps land just below c


def test_adamw_effective_lr_barely_moves_under_constant_clipping():
    """Clipping every step rescales every gradient, and AdamW divides by sqrt(v) of the rescaled
    gradients: the update (hence the effective LR) stays close to the unclipped one, far from
    lr · E[min(1, c/‖g‖)]. SGD's effective LR is exactly lr · E[scale]."""
    out = sim(batch_size=[4, 4, 4], lr=[0.01] * 3, clip=[1e9, 0.05, 0.05], seeds=[3], steps=2000,
              optimizer="adamw")
    assert out["effective_lr"][0] == 0.01
    assert out["clip_frequency"][1] == 1.0 and out["clip_scale"][1] < 0.1
    assert 0.7 * 0.01 < out["effective_lr"][1] < 1.3 * 0.01
    no_twin = sim(batch_size=[4], lr=[0.01], clip=[0.05], seeds=[3], steps=50, twin=False)
    assert math.isnan(no_twin["effective_lr"][0])
    sgd = sim(batch_size=[4], lr=[0.05], clip=[0.5], seeds=[3], optimizer="sgd")
    assert sgd["effective_lr"][0] == pytest.approx(0.05 * sgd["clip_scale"][0], rel=1e-12)


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_result_for_one_and_two_threads():
    kw = {"batch_size": [4, 16, 64] * 2, "lr": [1e-3, 1e-2, 1e-1] * 2, "clip": [0.5] * 3 + [None] * 3, "seeds": [0, 5],
              "steps": 300}
    one, two = sim(threads=1, **kw), sim(threads=2, **kw)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
    again = sim(threads=2, **kw)
    np.testing.assert_array_equal(two["final_loss"], again["final_loss"])
    other_seed = sim(threads=2, **{**kw, "seeds": [1, 5]})
    assert not np.array_equal(other_seed["final_loss"][::2], one["final_loss"][::2])
    np.testing.assert_array_equal(other_seed["final_loss"][1::2], one["final_loss"][1::2])


def test_f32_and_f64_agree_statistically():
    kw = {"batch_size": [8], "lr": [0.01], "clip": [1.0], "seeds": list(range(6)), "steps": 1000, "sigma2": 2.0}
    a, b = sim(precision="f32", **kw), sim(precision="f64", **kw)
    np.testing.assert_allclose(a["final_loss"], b["final_loss"], rtol=1e-3)
    np.testing.assert_allclose(a["clip_frequency"], b["clip_frequency"], atol=0.02)


def test_divergence_is_flagged():
    out = sim(sigma2=0.0, batch_size=[1, 1], lr=[1.5, 0.1], clip=[None, None], optimizer="sgd", momentum=0.0,
              weight_decay=0.0)  # η h_max = 3 > 2: the sharpest direction grows
    assert out["diverged"].tolist() == [True, False]
    assert 0 < out["diverged_step"][0] < 100 and out["diverged_step"][1] == -1
    assert math.isinf(out["final_loss"][0]) and math.isfinite(out["final_loss"][1])


def test_curves_are_recorded_at_log_spaced_steps():
    out = sim(batch_size=[4], lr=[0.01], clip=[None], steps=1000, curve_points=5)
    assert out["curve_steps"].tolist() == [0, 1, 10, 100, 1000]
    assert out["curve"].shape == (1, 5)
    assert out["curve"][0, 0] == pytest.approx(MODEL["init_loss"])


# --------------------------------------------------------------------------- errors
BAD = [
    {"lr": [-0.1]},
    {"lr": [float("nan")]},
    {"lr": [float("inf")]},
    {"batch_size": [0]},
    {"batch_size": [-4]},
    {"d": 0},
    {"d": -1},
    {"h_max": float("nan")},
    {"h_max": 0.0},
    {"alpha": -1.0},
    {"sigma2": float("nan")},
    {"sigma2": -1.0},
    {"init_loss": 0.5},
    {"loss_floor": float("inf")},
    {"init_power": 3.0},
    {"clip": [0.0]},
    {"clip": [-1.0]},
    {"clip": [float("nan")]},
    {"steps": 0},
    {"steps": -5},
    {"seeds": [-1]},
    {"optimizer": "adam"},
    {"betas": (1.0, 0.999)},
    {"eps": float("nan")},
    {"weight_decay": -0.1},
    {"momentum": 1.0, "optimizer": "sgd"},
    {"warmup_steps": 500},
    {"schedule": "linear"},
    {"precision": "f16"},
    {"threads": 0},
    {"threads": 30_000},  # would try to start that many threads
    {"curve_points": 10**12},  # would try to allocate and fill a curve that long
    {"eps": 0.0},  # AdamW's 0/0 in a direction of zero gradient
    {"batch_size": [4, 4]},  # lengths differ from lr and clip
]


@pytest.mark.parametrize("bad", BAD, ids=[",".join(b) for b in BAD])
def test_every_bad_parameter_is_a_value_error(bad):
    kw = {"batch_size": [4], "lr": [0.01], "clip": [1.0]}
    kw.update(bad)
    with pytest.raises(ValueError) as e:
        sim(**kw)
    assert "\n" not in str(e.value) and str(e.value)


def test_bad_reference_arguments_are_value_errors():
    g, th = np.ones((3, 2)), np.zeros(2)
    for kw in ({"lr": -1.0}, {"lr": 0.1, "clip": 0.0}, {"lr": 0.1, "betas": (0.9, 1.5)}):
        with pytest.raises(ValueError):
            _core.adamw_reference(g, th, **kw)
    with pytest.raises(ValueError):
        _core.adamw_reference(g, np.zeros(3), 0.1)
    with pytest.raises(ValueError):
        _core.sgd_reference(np.full((3, 2), np.nan), th, 0.1)
    with pytest.raises(ValueError):
        _core.simulate_trajectory(**MODEL, batch_size=0, lr=0.1, clip=None, seed=0, steps=10)


INTERRUPTED = """
import sys, time
from pyphase import _core
from pyphase.nqm import NQMParams
print("start", flush=True)
t0 = time.monotonic()
try:  # minutes of work: only Ctrl-C can end it in time
    _core.simulate(**NQMParams.default().core_kwargs(), batch_size=[4] * 4, lr=[1e-3] * 4, clip=[1.0] * 4,
                   seeds=[0, 1, 2, 3], steps=20_000_000)
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - t0:.3f}", flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_stops_a_long_simulation_within_moments() -> None:
    """The sweep runs without the GIL; the binding checks for signals every 50 ms and stops it
    (rust/bindings/sim.rs run_interruptibly): KeyboardInterrupt comes within moments, not after the
    call (minutes here)."""
    import signal
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, text=True,
                             # a child of a non-interactive shell may inherit SIGINT ignored: restore it
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "start"
        time.sleep(1.0)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        child.kill()
    assert child.returncode == 3 and out.startswith("interrupted"), (child.returncode, out)
    assert waited < 5.0, waited  # a step of 4 configs at the default d takes well under a millisecond
