"""Calibration: the two-batch noise estimator, Lanczos and Hutchinson on HVPs, the NQM fit, and the
end-to-end `calibrate` on the tiny shape + synthetic corpus (CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pyphase.calibrate import (
    fit_nqm,
    fit_two_batch,
    hutchinson_trace,
    hvp_closure,
    lanczos,
    measure_noise,
    nqm_moments,
    spectrum_sum,
)


# --------------------------------------------------------------------------- two-batch estimator
class LeastSquares:
    """Per-example loss ½(xᵀw − y)² with x ~ N(0, diag(c)), y = xᵀw* + ε, ε ~ N(0, s²).

    With u = w − w*: G = Cu, and by Isserlis' theorem the per-example gradient covariance is
    Σ = Cuuᵀ C + (uᵀCu)C + s²C, so tr(Σ) = |Cu|² + (uᵀCu + s²)·tr(C)."""

    def __init__(self, p: int = 40, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.c = torch.linspace(0.2, 2.0, p, dtype=torch.float64)
        self.w_star = torch.randn(p, generator=g, dtype=torch.float64)
        self.w = self.w_star + 0.3 * torch.randn(p, generator=g, dtype=torch.float64)
        self.s = 0.5
        self.gen = torch.Generator().manual_seed(seed + 1)

    @property
    def grad_norm2(self) -> float:
        return float(((self.c * (self.w - self.w_star)) ** 2).sum())

    @property
    def trace_sigma(self) -> float:
        u = self.w - self.w_star
        return self.grad_norm2 + float((u * self.c * u).sum() + self.s ** 2) * float(self.c.sum())

    def grad(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean gradient of m fresh examples, through autograd like the real model's."""
        x = torch.randn(m, len(self.c), generator=self.gen, dtype=torch.float64) * self.c.sqrt()
        y = x @ self.w_star + self.s * torch.randn(m, generator=self.gen, dtype=torch.float64)
        w = self.w.clone().requires_grad_()
        loss = 0.5 * ((x @ w - y) ** 2).mean()
        (g,) = torch.autograd.grad(loss, [w])
        return g, loss.detach()


def test_two_batch_formula_is_mccandlish_pair_and_exact_on_expectations() -> None:
    g2, tr = 3.0, 500.0
    bs, bb = 8, 64
    s = np.array([[g2 + tr / bs, g2 + tr / bb]] * 3)
    est = fit_two_batch(s, [bs, bb])
    assert est.grad_norm2 == pytest.approx(g2, rel=1e-12)
    assert est.trace_sigma == pytest.approx(tr, rel=1e-12)
    assert est.b_simple == pytest.approx(tr / g2, rel=1e-12)
    # McCandlish et al. App. A, written out, on a single noisy pair
    small, big = 70.0, 11.0
    one = fit_two_batch(np.array([[small, big], [small, big]]), [bs, bb])
    assert one.grad_norm2 == pytest.approx((bb * big - bs * small) / (bb - bs))
    assert one.trace_sigma == pytest.approx((small - big) / (1 / bs - 1 / bb))
    # three batch sizes on exact expectations: least squares is still exact
    est3 = fit_two_batch(np.array([[g2 + tr / b for b in (4, 16, 64)]] * 2), [4, 16, 64])
    assert (est3.grad_norm2, est3.trace_sigma) == pytest.approx((g2, tr), rel=1e-12)
    with pytest.raises(ValueError, match=r"batch sizes must be >= 1, got \[0, 8\]"):
        fit_two_batch(np.array([[1.0, 2.0]]), [0, 8])


def test_two_batch_estimator_recovers_least_squares_noise_within_monte_carlo_error() -> None:
    prob = LeastSquares()
    m = measure_noise(prob.grad, [4, 32], repeats=200)
    est = m.noise
    # within 4 standard errors of the closed form, and the errors are small enough to mean something
    assert abs(est.grad_norm2 - prob.grad_norm2) < 4 * est.grad_norm2_se
    assert abs(est.trace_sigma - prob.trace_sigma) < 4 * est.trace_sigma_se
    assert est.trace_sigma_se < 0.05 * prob.trace_sigma
    assert est.grad_norm2_se < 0.5 * prob.grad_norm2
    b_true = prob.trace_sigma / prob.grad_norm2
    assert abs(est.b_simple - b_true) < 4 * est.b_simple_se
    # per-coordinate split sums to the global figures (same estimator, coordinate by coordinate)
    assert m.coord_noise.sum() == pytest.approx(est.trace_sigma, rel=0.05)
    assert m.passes == 200 * 8 and m.examples == 200 * 32


def test_measure_noise_rejects_bad_batch_sizes() -> None:
    prob = LeastSquares()
    with pytest.raises(ValueError, match="two distinct"):
        measure_noise(prob.grad, [8, 8], repeats=3)
    with pytest.raises(ValueError, match="divide"):
        measure_noise(prob.grad, [3, 8], repeats=3)
    with pytest.raises(ValueError, match="repeats"):
        measure_noise(prob.grad, [2, 8], repeats=1)


# --------------------------------------------------------------------------- curvature
class Quadratic(torch.nn.Module):
    """½ xᵀAx with A = U diag(λ) Uᵀ, a known spectrum (a few separated top values, a bulk, negatives)."""

    def __init__(self, dim: int = 300, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        top = torch.tensor([50.0, 30.0, 20.0, 14.0, 10.0], dtype=torch.float64)
        bulk = torch.rand(dim - 8, generator=g, dtype=torch.float64) * 2.0
        neg = torch.tensor([-3.0, -1.0, -0.5], dtype=torch.float64)
        self.lam = torch.cat([top, bulk, neg])
        u, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        self.a = u @ torch.diag(self.lam) @ u.T
        self.x = torch.nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return 0.5 * self.x @ self.a @ self.x


def test_lanczos_recovers_top_eigenvalues_of_a_known_hessian() -> None:
    q = Quadratic()
    hvp = hvp_closure(q(), [q.x])
    res = lanczos(hvp, 300, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    true = np.sort(q.lam.numpy())[::-1]
    np.testing.assert_allclose(res.ritz[:5], true[:5], rtol=1e-6)
    assert res.ritz[-1] == pytest.approx(true[-1], rel=1e-4)  # the most negative converges too
    # each top Ritz value is within its residual bound of a true eigenvalue
    for theta, r in zip(res.ritz[:5], res.residual[:5]):
        assert np.min(np.abs(true - theta)) <= r + 1e-9
    assert res.n_hvp == 40
    qb = res.basis
    np.testing.assert_allclose((qb @ qb.T).numpy(), np.eye(40), atol=1e-10)


def test_lanczos_stops_on_an_invariant_subspace() -> None:
    a = torch.diag(torch.tensor([5.0, 2.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    res = lanczos(lambda v: a @ v, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert res.n_hvp <= 3
    assert res.ritz[:2] == pytest.approx([5.0, 2.0], abs=1e-10)


def test_hutchinson_trace_within_its_standard_error_and_se_matches_theory() -> None:
    q = Quadratic()
    hvp = hvp_closure(q(), [q.x])
    a = q.a
    true = float(torch.trace(a))
    n = 400
    est = hutchinson_trace(hvp, 300, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert abs(est.trace - true) < 4 * est.se
    # Var(zᵀAz) = 2(‖A‖_F² − Σ A_ii²) for Rademacher z
    se_theory = math.sqrt(2 * (float((a ** 2).sum()) - float((torch.diag(a) ** 2).sum())) / n)
    assert est.se == pytest.approx(se_theory, rel=0.2)
    # deflating by the Lanczos basis keeps it unbiased and shrinks the error
    lz = lanczos(hvp, 300, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    defl = hutchinson_trace(hvp, 300, 100, generator=torch.Generator().manual_seed(4), dtype=torch.float64,
                            deflate=lz)
    assert abs(defl.trace - true) < 4 * defl.se
    assert defl.se * math.sqrt(100) < 0.5 * est.se * math.sqrt(n)


# --------------------------------------------------------------------------- NQM fit
def test_spectrum_sum_tail_matches_exact_sum() -> None:
    for alpha in (0.3, 1.0, 1.7):
        for power in (1.0, 2.0):
            d = 200_000
            exact = float(np.sum(np.arange(1, d + 1, dtype=np.float64) ** (-power * alpha)))
            assert spectrum_sum(alpha, d, power) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("init_power", [0.0, 0.7, 1.6])
def test_nqm_fit_round_trips_its_measurements(init_power: float) -> None:
    # measurements generated by a known NQM are reproduced by the fit's closed forms
    d, h_max, alpha, sigma2, l0, lmin = 5000, 40.0, 0.8, 0.02, 4.2, 1.9
    truth = nqm_moments(d, h_max, alpha, sigma2, l0 - lmin, 8, init_power)
    fit = fit_nqm(truth["top_eigenvalues"], truth["hessian_trace"], truth["trace_sigma"], l0, lmin,
                  truth["grad_norm2"])
    assert fit.trace_matched and fit.grad_norm_matched and fit.top_eig_log_rms < 1e-3
    assert fit.alpha == pytest.approx(alpha, abs=2e-3)
    assert fit.d == pytest.approx(d, rel=0.02)
    assert fit.init_power == pytest.approx(init_power, abs=0.02)
    back = fit.moments(8)
    assert back["hessian_trace"] == pytest.approx(truth["hessian_trace"], rel=1e-9)
    assert back["trace_sigma"] == pytest.approx(truth["trace_sigma"], rel=1e-9)
    assert back["grad_norm2"] == pytest.approx(truth["grad_norm2"], rel=1e-3)
    assert back["b_simple"] == pytest.approx(truth["b_simple"], rel=1e-3)
    np.testing.assert_allclose(back["top_eigenvalues"], truth["top_eigenvalues"], rtol=1e-2)
    assert (fit.init_loss, fit.loss_floor) == (l0, lmin)


def test_nqm_fit_clamps_an_unreachable_initial_gradient_and_says_so() -> None:
    eigs, tr, trs = [40.0, 20.0, 14.0], 400.0, 50.0
    lo = fit_nqm(eigs, tr, trs, 4.2, 1.9, 1e-6)  # far below the harmonic-mean bound: γ = 2
    hi = fit_nqm(eigs, tr, trs, 4.2, 1.9, 1e6)  # far above the isotropic start: γ = 0
    assert (lo.init_power, hi.init_power) == (2.0, 0.0)
    assert not lo.grad_norm_matched and not hi.grad_norm_matched
    assert any("init_power" in n for n in lo.notes)


def test_nqm_fit_matches_trace_and_noise_exactly_on_real_looking_measurements() -> None:
    # eigenvalues that are not a power law: trace and tr(Σ) are still matched exactly
    eigs = [120.0, 60.0, 55.0, 30.0, 12.0, 11.0]
    fit = fit_nqm(eigs, 3000.0, 900.0, 4.17, 1.9)
    m = fit.moments(6)
    assert m["hessian_trace"] == pytest.approx(3000.0, rel=1e-9)
    assert m["trace_sigma"] == pytest.approx(900.0, rel=1e-9)
    assert m["top_eigenvalues"][0] == 120.0
    assert fit.top_eig_log_rms > 0


def test_nqm_fit_rejects_unfittable_measurements() -> None:
    with pytest.raises(ValueError, match="two positive"):
        fit_nqm([5.0, -1.0], 10.0, 1.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="trace"):
        fit_nqm([5.0, 1.0], -10.0, 1.0, 4.0, 1.0)
    with pytest.raises(ValueError, match="exceed"):
        fit_nqm([5.0, 1.0], 10.0, 1.0, 1.0, 1.0)


def test_nqm_closed_forms_agree_with_the_simulator_engine() -> None:
    from pyphase import _core

    for d, gamma in ((300, 0.0), (300, 1.3), (200_000, 0.0), (200_000, 0.6), (200_000, 2.0)):
        # exact sums, and the Euler-Maclaurin tail; isotropic and shaped starts
        kw = {"d": d, "h_max": 40.0, "alpha": 0.8, "sigma2": 0.02, "init_loss": 4.2, "loss_floor": 1.9,
              "init_power": gamma}
        eng = _core.nqm_describe(**kw)
        ours = nqm_moments(d, 40.0, 0.8, 0.02, 4.2 - 1.9, 4, gamma)
        assert ours["grad_norm2"] == pytest.approx(eng["init_grad_norm"] ** 2, rel=1e-9)
        assert ours["trace_sigma"] == pytest.approx(eng["trace_sigma"], rel=1e-9)
        assert ours["b_simple"] == pytest.approx(eng["b_simple"], rel=1e-9)
        assert ours["hessian_trace"] == pytest.approx(float(eng["spectrum"].sum()), rel=1e-9)
        np.testing.assert_allclose(ours["top_eigenvalues"], eng["spectrum"][:4], rtol=1e-12)


# --------------------------------------------------------------------------- calibrate end to end
TINY = ["--device", "cpu", "--shape", "tiny", "--batch", "2,8", "--steps-along", "0,3", "--repeats", "2",
        "--lanczos", "6", "--probes", "2", "--hvp-batch", "2", "--top-k", "3", "--no-progress"]


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `pyphase.cli.main` in-process as the console script would; return (code, out, err)."""
    import sys

    from pyphase import cli

    monkeypatch.setattr(sys, "argv", ["pyphase", *args])
    monkeypatch.delenv("PYPHASE_DATA", raising=False)
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_end_to_end_tiny_cpu(monkeypatch, capsys, tmp_path) -> None:
    import json

    from pyphase.data import load_corpus

    out = tmp_path / "cal.json"
    code, stdout, err = run_main(monkeypatch, capsys, "calibrate", *TINY, "--out", str(out), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    corpus = load_corpus(None)
    pts = res["points"]
    assert [p["step"] for p in pts] == [0, 3]
    # small N(0, 0.02) init: logits ~ 0, so the initial loss is ln V
    assert pts[0]["loss"] == pytest.approx(math.log(corpus.tokenizer.vocab_size), abs=0.05)
    assert pts[1]["loss"] < pts[0]["loss"]
    # exact accounting: 2 points × 2 repeats × 8 windows × 32 tokens; (6 Lanczos + 2 probes + 1) HVPs a point
    b = res["budget"]
    assert b["gradient_tokens"] == 2 * 2 * 8 * 32
    assert b["hvp_products"] <= 2 * (6 + 2 + 1)
    assert b["train_tokens"] == 3 * 2 * 32
    assert 0 < b["fraction_of_reference"] < 1e-4
    # the fit reproduces the measurements it was fitted to at the fit step (the last point)
    c, fit = res["consistency"], res["params"]
    assert res["fit_step"] == 3
    assert c["nqm"]["hessian_trace"] == pytest.approx(pts[1]["hessian_trace"], rel=1e-9)
    assert c["nqm"]["trace_sigma"] == pytest.approx(pts[1]["noise"]["trace_sigma"], rel=1e-9)
    assert fit["h_max"] == pytest.approx(pts[1]["eigenvalues"][0])
    assert fit["init_loss"] == pytest.approx(pts[0]["loss"])
    assert fit["loss_floor"] == pytest.approx(corpus.trigram_entropy, rel=1e-9)  # --floor ngram3
    prov = res["provenance"]
    assert prov["data"]["sha256"] == corpus.sha256 and prov["torch"] == torch.__version__
    assert prov["shape"]["name"] == "tiny" and prov["device"].startswith("cpu")
    assert out.is_file()
    from pyphase.nqm import FIELDS, NQMParams

    params = NQMParams.load(out)
    assert {k: getattr(params, k) for k in FIELDS} == {k: fit[k] for k in FIELDS}
    assert params.source == "calibration"
    assert params.provenance["data"]["sha256"] == corpus.sha256
    assert params.provenance["measurements"]["points"][1]["hessian_trace"] == pts[1]["hessian_trace"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "0,4"], "--batch"),
        (["--batch", "8"], "two distinct"),
        (["--batch", "3,8"], "divide"),
        (["--batch", "a,b"], "--batch"),
        (["--steps-along", "5,10"], "include 0"),
        (["--shape", "huge"], "--shape"),
        (["--lr", "-1"], "--lr"),
        (["--floor", "ngram9"], "--floor"),
        (["--fit-step", "7"], "--fit-step"),
        (["--data", "/nonexistent/corpus.txt"], "not found"),
        (["--floor", "fit"], "could not be fitted"),
        (["--steps-along", "0,99999999999"], "--steps-along: steps must be <= 10,000,000"),
        (["--seed", "99999999999999999999"], "--seed: must be an integer in 0..2147483647"),
        # past int64 these were OverflowError tracebacks from the batcher or torch
        (["--run-batch", "99999999999999999999"], "--run-batch: must be <= 1,048,576, got 99,999,999,999,999,999,999"),
        (["--hvp-batch", "99999999999999999999"], "--hvp-batch: must be <= 1,048,576"),
        (["--repeats", "99999999999999999999"], "--repeats: must be <= 100,000"),
        (["--lanczos", "99999999999999999999"], "--lanczos: must be <= 10,000"),
        (["--probes", "99999999999999999999"], "--probes: must be <= 100,000"),
        (["--top-k", "99999999999999999999"], "--top-k: must be <= 10,000"),
        (["--batch", "4,99999999999999999996"], "--batch: batch sizes must be <= 1,048,576"),
        (["--batch", "2,1048576", "--repeats", "1025"], "--repeats x the largest --batch: 1,025 x 1,048,576"),
        (["--steps-along", "0,10000000", "--run-batch", "1000"], "--steps-along x --run-batch: 10,000,000 x 1,000"),
        (["--lr", "1e300"], "--lr: must be in [1.175494e-38, 3.402823e+38]"),
    ],
)
def test_calibrate_bad_options_exit_2_with_one_line(monkeypatch, capsys, tmp_path, args, message) -> None:
    code, out, err = run_main(monkeypatch, capsys, "calibrate", *TINY, "--out", str(tmp_path / "c.json"), *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not (tmp_path / "c.json").exists()


def test_power_law_floor_recovers_a_known_asymptote() -> None:
    from pyphase.calibrate import power_law_floor

    t = np.arange(1, 2001)
    rng = np.random.default_rng(0)
    loss = 1.2 + 3.0 * t ** -0.5 + 0.01 * rng.standard_normal(len(t))
    fit = power_law_floor(t, loss)
    assert abs(fit["L_inf"] - 1.2) < max(4 * fit["L_inf_se"], 0.02)
    assert fit["gamma"] == pytest.approx(0.5, abs=0.1)
    assert power_law_floor(t[:5], loss[:5]) == {}  # too short to fit: no estimate, not a guess


def test_optimizer_view_update_rms_is_the_step_adamw_took() -> None:
    from pyphase.calibrate import optimizer_view

    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(500, generator=g))
    target = torch.randn(500, generator=g)
    lr, betas, eps = 1e-2, (0.9, 0.999), 1e-8
    opt = torch.optim.AdamW([w], lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    for _ in range(7):
        before = w.detach().clone()
        opt.zero_grad()
        ((w - target) ** 2 * torch.rand(500, generator=g)).sum().backward()
        opt.step()
    st = opt.state[w]
    view = optimizer_view(st["exp_avg"], st["exp_avg_sq"], 7, betas, eps)
    actual = float(((w.detach() - before) / lr).square().mean().sqrt())
    assert view["update_rms"] == pytest.approx(actual, rel=1e-4)
    assert view["step"] == 7


def test_nqm_fit_says_when_no_spectrum_holds_the_trace() -> None:
    eigs = [10.0, 5.0, 10.0 / 3.0]  # exactly h_max / i: alpha = 1
    low = fit_nqm(eigs, 8.0, 1.0, 4.0, 1.0)  # trace below h_max (indefinite Hessian)
    assert not low.trace_matched and low.d == 3 and low.alpha == pytest.approx(1.0)
    assert any("below h_max" in n for n in low.notes)
    high = fit_nqm(eigs, 1e5, 1.0, 4.0, 1.0, max_d=1000)  # needs more directions than allowed
    assert not high.trace_matched and high.d == 1000 and high.alpha == pytest.approx(1.0)
    # σ² still makes Σσ²h_i equal the measured tr(Σ) on the fitted spectrum
    assert high.moments(3)["trace_sigma"] == pytest.approx(1.0, rel=1e-9)


def test_calibrate_out_that_cannot_be_written_fails_before_measuring(monkeypatch, capsys, tmp_path) -> None:
    from pyphase import data

    monkeypatch.setattr(data, "load_corpus", lambda *a, **k: pytest.fail("measured"))  # calibrate imports it then
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    for out, told in ((tmp_path / "f" / "x.json", "f is a file, not a folder"), (tmp_path / "d", "is a folder")):
        code, _, err = run_main(monkeypatch, capsys, "calibrate", *TINY, "--out", str(out))
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: --out {out}: ") and told in err, err


def test_check_out_file_creates_nothing_and_words_folders_as_export_does(tmp_path) -> None:
    from pyphase.calibrate import check_out_file
    from pyphase.errors import PyphaseError
    from pyphase.results import check_output_folder

    deep = tmp_path / "a" / "b" / "cal.json"
    check_out_file(deep)  # a folder that can be made: fine, and not made yet
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    bad = tmp_path / "f" / "g" / "cal.json"
    with pytest.raises(PyphaseError) as mine:
        check_out_file(bad)
    with pytest.raises(PyphaseError) as theirs:
        check_output_folder(bad.parent, f"--out {bad}")
    assert str(mine.value) == str(theirs.value) == f"--out {bad}: {tmp_path / 'f'} is a file, not a folder"


def test_check_out_file_finds_folders_that_cannot_be_made_and_names_too_long_ones(tmp_path) -> None:
    from pyphase.calibrate import check_out_file
    from pyphase.errors import PyphaseError

    if Path("/proc/self").is_dir():  # access() says yes for root, only a real write says no
        with pytest.raises(PyphaseError, match=r"^--out /proc/pyphase-nosuch/c\.json: cannot write there: "):
            check_out_file("/proc/pyphase-nosuch/c.json")
    long = tmp_path / ("x" * 300) / "c.json"
    with pytest.raises(PyphaseError, match=r"^--out .*: File name too long"):
        check_out_file(long)


def test_calibrate_run_batch_past_int64_exits_2_in_a_real_process(tmp_path) -> None:
    """The reviewer's command: an OverflowError traceback (exit 1) before; one line, exit 2, no file now."""
    import subprocess
    import sys

    out = tmp_path / "calx.json"
    r = subprocess.run([sys.executable, "-m", "pyphase", "calibrate", "--device", "cpu", "--shape", "tiny",
                        "--no-progress", "--out", str(out), "--repeats", "2", "--lanczos", "8", "--probes", "2",
                        "--steps-along", "0,5", "--radial-lrs", "none", "--run-batch", "99999999999999999999"],
                       capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "error: --run-batch: must be <= 1,048,576, got 99,999,999,999,999,999,999\n"
    assert list(tmp_path.iterdir()) == []


def test_calibrate_allocation_failure_is_one_line(monkeypatch, capsys, tmp_path) -> None:
    import pyphase.model

    def refuse(self, *args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes.")

    monkeypatch.setattr(pyphase.model.NanoTransformer, "__init__", refuse)
    code, out, err = run_main(monkeypatch, capsys, "calibrate", *TINY, "--out", str(tmp_path / "c.json"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: out of memory (--device cpu) while calibrating: an allocation of 64 GiB failed; ")
    assert not (tmp_path / "c.json").exists()
