"""LR_opt refinement, β fits with intervals, clip-norm checks and predicted-vs-measured scores,
pinned on synthetic result sets with a known β (loss bowls in log10 LR whose minima follow C·B^β)."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest

from pyphase import analysis as an
from pyphase.errors import PyphaseError
from pyphase.schema import PREDICTION_COLUMNS, SUMMARY_COLUMNS

BATCHES = (16, 32, 64, 128, 256)
LRS = tuple(float(v) for v in 10 ** np.linspace(-4, -1, 13))  # quarter-decade grid
# β recovery tolerance for the default bowl (noise 0.01, curvature 0.3, 4 seeds, 5 batch sizes):
# the estimate's spread is σ = 0.035 (measured over 200 synthetic sets, worst |error| 0.12), so 0.15 > 4σ.
BETA_TOL = 0.15


def true_lr_opt(b: float, beta: float, c: float) -> float:
    return c * b**beta


def bowl_summaries(
    *,
    beta: float = 0.5,
    c: float = 2e-4,
    batches: tuple[int, ...] = BATCHES,
    lrs: tuple[float, ...] = LRS,
    seeds: int = 4,
    noise: float = 0.01,
    curvature: float = 0.3,
    clip: float | None = 1.0,
    optimizer: str | None = "adamw",
    experiment: str = "synth",
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Summary rows (schema.SUMMARY_COLUMNS) whose seed-mean val loss is a parabola in log10 LR with
    its minimum at C·B^β, plus Gaussian noise per run. Clip frequency rises with LR through 0.5 at LR_opt."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for b in batches:
        opt = math.log10(true_lr_opt(b, beta, c))
        for lr in lrs:
            dx = math.log10(lr) - opt
            freq = 0.0 if clip is None else 1 / (1 + math.exp(-4 * dx))
            for s in range(seeds):
                val = 2.0 - 0.1 * math.log10(b) + curvature * dx**2 + noise * rng.standard_normal()
                # a fraction `freq` of steps has norm high > clip (clipped to clip), the rest low < clip
                low, high = 0.5 * (clip or 1.0), (clip or 1.0) * (2 + dx**2)
                before = freq * high + (1 - freq) * low
                rows.append(
                    {
                        "batch_size": b,
                        "lr": lr,
                        "gradient_clip": clip,
                        "final_train_loss": val - 0.02,
                        "final_val_loss": val,
                        "train_loss_std": 0.01,
                        "avg_grad_norm_before": before,
                        "avg_grad_norm_after": before if clip is None else freq * clip + (1 - freq) * low,
                        "avg_clip_frequency": freq,
                        "converged": True,
                        "num_steps": 1000,
                        "experiment": experiment,
                        "run_id": f"b{b}-lr{lr:.3g}-c{clip}-s{s}",
                        "seed": s,
                        "optimizer": optimizer,
                        "n_params": 800_000,
                        "diverged_step": None,
                        "wall_time_s": 1.0,
                        "tokens_per_s": 1e5,
                        "device": "synthetic",
                        "torch_version": "0",
                        "git_commit": "0" * 40,
                        "corpus": "synthetic",
                        "corpus_sha256": "0" * 64,
                        # left unknown: tests of the milestone lines supply them where they need them
                        "corpus_unigram_entropy": None,
                        "corpus_bigram_entropy": None,
                        "corpus_vocab_size": None,
                    }
                )
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df.select(SUMMARY_COLUMNS)


def as_prediction(summaries: pl.DataFrame) -> pl.DataFrame:
    """The same configs as a `pyphase predict` trajectory table."""
    return summaries.select(
        pl.col("gradient_clip").alias("clip"),
        "optimizer",
        "batch_size",
        "lr",
        "seed",
        pl.col("final_val_loss").alias("final_loss"),
        pl.col("avg_clip_frequency").alias("clip_frequency"),
        pl.col("avg_grad_norm_before").alias("grad_norm_before"),
        pl.col("avg_grad_norm_after").alias("grad_norm_after"),
        pl.lit(1.0).alias("clip_scale"),
        pl.col("lr").alias("effective_lr"),
        pl.col("converged").not_().alias("diverged"),
        "diverged_step",
    ).select(PREDICTION_COLUMNS)


# --------------------------------------------------------------------------- parabola refinement
def test_parabola_refinement_recovers_off_grid_minimum_exactly() -> None:
    x = np.log10(np.array(LRS))
    true_min = -2.3172  # between grid points -2.5 and -2.25
    y = 0.7 * (x - true_min) ** 2 + 3.0
    opt, idx, refined = an.refine_minima(x, y)
    assert refined[0]
    assert abs(opt[0] - true_min) < 1e-12
    assert x[idx[0]] == pytest.approx(-2.25)


def test_parabola_refinement_is_exact_on_a_nonuniform_grid() -> None:
    x = np.log10(np.array([0.01, 0.02, 0.03, 0.05, 0.1]))
    true_min = math.log10(0.041)
    y = 2.0 * (x - true_min) ** 2 + 1.0
    opt, _, refined = an.refine_minima(x, y)
    assert refined[0] and abs(opt[0] - true_min) < 1e-12


def test_refinement_is_vectorised_over_rows_like_single_calls() -> None:
    x = np.log10(np.array(LRS))
    rng = np.random.default_rng(3)
    y = rng.random((50, x.size))
    opt, idx, refined = an.refine_minima(x, y)
    for i in range(50):
        o, j, r = an.refine_minima(x, y[i])
        assert (o[0], j[0], r[0]) == (opt[i], idx[i], refined[i])


def test_minimum_next_to_a_diverged_point_keeps_the_grid_value() -> None:
    lrs = np.array([0.01, 0.02, 0.03, 0.05, 0.1])
    loss = np.array([4.0, 3.9, 3.8, 3.3, np.inf])
    o = an.optimum_of(256, lrs, loss, 1)
    assert not o.refined and not o.at_edge and o.lr_opt == 0.05 and "diverged" in o.note


def test_edge_minimum_is_flagged_and_not_refined() -> None:
    df = bowl_summaries(beta=0.5, c=2e-4, batches=(16, 64, 256), lrs=LRS[:7], seeds=1, noise=0.0)
    # LR_opt(256) = 3.2e-3 > max grid LR 1e-2.5: its minimum sits on the high edge
    optima = {o.batch_size: o for o in an.lr_optima(df)}
    high = optima[256]
    assert high.at_edge and high.edge == "high" and not high.refined
    assert high.lr_opt == high.grid_lr == max(LRS[:7])
    assert not optima[16].at_edge and optima[16].refined
    assert an.measure_beta(df)[0].any_at_edge


def test_json_beta_is_null_where_the_report_says_not_measured() -> None:
    # interior minima: a β; one batch size on a grid edge: β a bound, still a number with its status;
    # every LR_opt on the high edge: the line through the grid's edge values is no β (null), though
    # `fit` keeps that line
    fit = an.measure_beta(bowl_summaries(beta=0.5, c=1e-3 / 8, noise=0.0, seeds=1))[0].to_dict()
    assert fit["beta_status"] == "fit" and fit["beta"] == pytest.approx(0.5, abs=1e-9)
    df = bowl_summaries(beta=0.5, c=2e-4, batches=(16, 64, 256), lrs=LRS[:7], seeds=1, noise=0.0)
    bounded = an.measure_beta(df)[0].to_dict()
    assert bounded["beta_status"] == "bounded" and bounded["beta"] == pytest.approx(bounded["fit"]["beta"])
    edge = an.measure_beta(bowl_summaries(beta=0.5, c=1.0, batches=(16, 64, 256), lrs=LRS[:3], seeds=2))[0]
    assert edge.all_at_edge and edge.fit is not None
    d = edge.to_dict()
    assert d["beta_status"] == "none" and d["beta"] is None and d["ci95"] is None and d["r2"] is None
    assert d["fit"]["beta"] == pytest.approx(edge.fit.beta)


def test_low_edge_and_single_lr_are_flagged() -> None:
    lrs = np.array([0.001, 0.01, 0.1])
    low = an.optimum_of(32, lrs, np.array([1.0, 2.0, 3.0]), 1)
    assert low.at_edge and low.edge == "low" and low.lr_opt == 0.001
    only = an.optimum_of(32, np.array([0.001]), np.array([1.0]), 1)
    assert only.at_edge and only.edge == "only"


def test_diverged_runs_count_as_infinite_loss() -> None:
    df = bowl_summaries(seeds=2, noise=0.0, batches=(64,))
    best_lr = an.lr_optima(df)[0].grid_lr
    # one seed of the best LR diverges (NaN loss), another config reports converged=False
    df = df.with_columns(
        pl.when((pl.col("lr") == best_lr) & (pl.col("seed") == 0))
        .then(float("nan"))
        .otherwise(pl.col("final_val_loss"))
        .alias("final_val_loss")
    )
    o = an.lr_optima(df)[0]
    assert o.grid_lr != best_lr
    table = an.config_table(df)
    assert table.filter(pl.col("lr") == best_lr)["n_diverged"][0] == 1
    assert math.isinf(table.filter(pl.col("lr") == best_lr)["loss"][0])


def test_every_lr_diverged_gives_nan_lr_opt_and_no_fit() -> None:
    df = bowl_summaries(batches=(32, 64), seeds=1).with_columns(
        pl.when(pl.col("batch_size") == 32).then(False).otherwise(pl.col("converged")).alias("converged")
    )
    m = an.measure_beta(df)[0]
    opt32 = next(o for o in m.optima if o.batch_size == 32)
    assert math.isnan(opt32.lr_opt) and opt32.note == "every LR diverged or did not converge"
    assert m.fit is None and m.interval_method.startswith("undefined")


# --------------------------------------------------------------------------- batch sizes with no optimum
GRID3 = (3e-4, 1.5e-3, 8e-3)  # around LR_opt = 2e-4·B^0.5 (1.1e-3 to 2.3e-3) for B = 32, 64, 128: interior


def _gridded_and_one_lr() -> tuple[pl.DataFrame, pl.DataFrame]:
    """B = 32, 64, 128 on a proper 3-LR grid, and the same runs plus B = 256 at one LR (far above the
    line, so a fit through it would differ visibly)."""
    gridded = bowl_summaries(batches=(32, 64, 128), lrs=GRID3, seeds=3)
    one = bowl_summaries(batches=(256,), lrs=(0.1,), seeds=3, rng_seed=1)
    return gridded, pl.concat([gridded, one])


def test_a_batch_size_with_one_lr_is_shown_but_left_out_of_the_fit() -> None:
    gridded, mixed = _gridded_and_one_lr()
    alone = an.measure_beta(gridded, n_boot=200)[0]
    m = an.measure_beta(mixed, n_boot=200)[0]
    assert [o.edge for o in alone.optima] == [None, None, None]
    assert m.fit == alone.fit and m.fit.n == 3  # β from the three gridded batch sizes only
    # B = 256 stays in the table, flagged as one LR tested, but is not a point of either fit
    only = m.optima[-1]
    assert only.batch_size == 256 and only.edge == "only" and only.at_edge and only.lr_opt == 0.1
    assert only.note == "one LR tested: no optimum can be located" and not only.fit_point
    assert [o.batch_size for o in m.fit_optima] == [32, 64, 128]
    assert m.left_out_of_fit == {256: "one LR tested, and a single LR cannot locate an optimum"}
    assert m.naive.to_dict() == alone.naive.to_dict()  # every grid argmin is the middle LR: R² NaN
    # the bootstrap sees the same three batch sizes: the same interval, drawn the same way
    assert (m.ci_low, m.ci_high, m.interval_method) == (alone.ci_low, alone.ci_high, alone.interval_method)
    assert m.not_measured_reason is None
    assert m.to_dict()["left_out_of_fit"] == {"256": "one LR tested, and a single LR cannot locate an optimum"}


def test_one_lr_at_every_batch_size_gives_no_fit_and_says_why() -> None:
    # phase3b: B = 32 at LR 1e-3 and B = 256 at LR 5e-2 (two seeds); a line through the two single
    # LRs used to pass for a 2-point "fit"
    one = pl.concat([bowl_summaries(batches=(32,), lrs=(1e-3,), seeds=2),
                     bowl_summaries(batches=(256,), lrs=(5e-2,), seeds=2)])
    m = an.measure_beta(one, n_boot=50)[0]
    assert [(o.batch_size, o.edge, o.lr_opt) for o in m.optima] == [(32, "only", 1e-3), (256, "only", 5e-2)]
    assert m.fit is None and m.naive is None and m.ci_low is None and m.ci_high is None
    reason = ("β needs LR_opt at two or more batch sizes, and no batch size has one "
              "(B=32, 256: one LR tested, and a single LR cannot locate an optimum)")
    assert m.not_measured_reason == reason and m.interval_method == f"undefined: {reason}"
    assert "finite LR_opt" not in m.interval_method
    assert m.all_at_edge and m.to_dict()["beta"] is None
    # one gridded batch size beside them: still no slope, and the words say which B has an LR_opt
    mixed = pl.concat([bowl_summaries(batches=(16,), lrs=GRID3, seeds=2), one])
    m2 = an.measure_beta(mixed, n_boot=50)[0]
    assert m2.fit is None and m2.interval_method == (
        "undefined: β needs LR_opt at two or more batch sizes, and only B=16 has one "
        "(B=32, 256: one LR tested, and a single LR cannot locate an optimum)")
    # compare scores nothing on them and names them as edge bounds (the report's "one LR per batch size")
    t = {x.name: x for x in an.compare(one, experiment="3b", prediction=as_prediction(one), n_boot=10).targets}
    assert t["beta"].passed is None and t["beta"].value == "not scored: LR_opt at grid edge (B=32, 256)"


def test_a_single_batch_size_says_so() -> None:
    m = an.measure_beta(bowl_summaries(batches=(64,), lrs=GRID3, seeds=1))[0]
    assert m.interval_method == ("undefined: β needs LR_opt at two or more batch sizes, and the group has one "
                                 "batch size (B=64)")


def test_a_flat_loss_curve_is_flat_not_a_low_edge() -> None:
    lrs = np.array([0.001, 0.01, 0.1])
    o = an.optimum_of(32, lrs, np.array([2.3, 2.3, 2.3]), 2)
    assert o.edge == "flat" and o.at_edge and not o.refined and not o.fit_point
    assert math.isnan(o.lr_opt) and math.isnan(o.grid_lr) and o.min_loss == 2.3
    assert o.note == ("flat: all 3 LRs give the same seed-mean loss (2.3), so no optimum can be located "
                      "(the loss does not depend on LR over this grid)")
    # the finite LRs are flat and the largest diverged: still flat, not a low-edge minimum
    d = an.optimum_of(32, lrs, np.array([2.3, 2.3, np.inf]), 2)
    assert d.edge == "flat" and "all 2 LRs with a finite loss in every seed (1 of 3 diverged or did not converge)" in d.note
    # seed means of the same run loss over different seed counts differ in the last bits: flat
    means = np.array([np.mean([0.1] * 3), 0.1, np.mean([0.1] * 7)])
    assert means[0] != means[1] and an.optimum_of(32, lrs, means, 1).edge == "flat"
    # float32 losses a few float32 steps apart (2.3's is 2.4e-7) are not resolved: flat
    f32 = np.array([2.3, np.nextafter(np.float32(2.3), np.float32(3)), np.float32(2.3) - 4 * 2.4e-7], dtype=np.float32)
    assert len(set(f32.tolist())) == 3 and an.optimum_of(32, lrs, f32.astype(float), 1).edge == "flat"
    # a difference above that, however small against the loss, is a minimum (here on the low edge)
    assert an.optimum_of(32, lrs, np.array([2.3, 2.3 + 1e-5, 2.3 + 1e-5]), 1).edge == "low"
    assert an.optimum_of(32, lrs, np.array([2.3, 2.3 * (1 + 1.1 * an.FLAT_RTOL), 2.3 + 1e-5]), 1).edge == "low"
    # one finite LR is not a curve: the old low-edge-next-to-a-diverged-point case
    assert an.optimum_of(32, lrs, np.array([2.3, np.inf, np.inf]), 1).edge == "low"


def test_a_flat_batch_size_is_left_out_of_the_fit() -> None:
    gridded = bowl_summaries(batches=(32, 64, 128), lrs=GRID3, seeds=3)
    # B = 256 learned nothing at any LR: the same loss everywhere (a uniform model over 65 symbols)
    flat = bowl_summaries(batches=(256,), lrs=GRID3, seeds=3).with_columns(
        pl.lit(math.log(65)).alias("final_val_loss"))
    alone = an.measure_beta(gridded, n_boot=200)[0]
    m = an.measure_beta(pl.concat([gridded, flat]), n_boot=200)[0]
    o = m.optima[-1]
    assert o.batch_size == 256 and o.edge == "flat" and o.edge != "low" and o.at_edge
    assert m.fit == alone.fit and m.naive.to_dict() == alone.naive.to_dict()
    assert (m.ci_low, m.ci_high) == (alone.ci_low, alone.ci_high)
    assert m.left_out_of_fit == {256: "the same loss at every LR (flat), so no optimum is located"}
    # flat beside one LR tested: no fit, and both reasons in words
    one = bowl_summaries(batches=(32,), lrs=(1e-3,), seeds=3)
    m2 = an.measure_beta(pl.concat([one, flat]), n_boot=50)[0]
    assert m2.fit is None and m2.interval_method == (
        "undefined: β needs LR_opt at two or more batch sizes, and no batch size has one (B=32: one LR tested, "
        "and a single LR cannot locate an optimum; B=256: the same loss at every LR (flat), so no optimum is located)")


# --------------------------------------------------------------------------- β recovery
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_beta_recovered_exactly_without_noise(beta: float) -> None:
    m = an.measure_beta(bowl_summaries(beta=beta, c=1e-3 / 64**beta, noise=0.0, seeds=1))[0]
    assert m.fit is not None and abs(m.fit.beta - beta) < 1e-9
    assert m.fit.c == pytest.approx(1e-3 / 64**beta, rel=1e-9)
    assert not m.any_at_edge


def test_noisy_beta_recovered_within_tolerance_and_interval_covers_truth() -> None:
    m = an.measure_beta(bowl_summaries(beta=0.5, noise=0.01, seeds=4, rng_seed=1), n_boot=1000)[0]
    assert m.fit is not None and abs(m.fit.beta - 0.5) < BETA_TOL
    assert m.interval_method.startswith("bootstrap over seeds")
    assert m.ci_low < 0.5 < m.ci_high
    assert m.fit.r2 > 0.9


def test_bootstrap_interval_coverage_is_near_nominal() -> None:
    covered = 0
    for k in range(30):
        m = an.measure_beta(bowl_summaries(beta=0.7, c=5e-5, noise=0.02, seeds=3, rng_seed=100 + k), n_boot=400)[0]
        covered += m.ci_low <= 0.7 <= m.ci_high
    # percentile bootstrap over 3 seeds is a little narrow: measured coverage 0.90 over 200 such sets
    # (27 of these 30); 22 of 30 fails only if coverage drops well below nominal
    assert covered >= 22


def test_bootstrap_is_deterministic_under_its_seed() -> None:
    df = bowl_summaries(noise=0.02, seeds=3)
    a, b = an.measure_beta(df, seed=5)[0], an.measure_beta(df, seed=5)[0]
    c = an.measure_beta(df, seed=6)[0]
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_two_seeds_give_the_envelope_of_bootstrap_and_t_interval() -> None:
    df = bowl_summaries(beta=0.5, noise=0.02, seeds=2, rng_seed=3)
    m = an.measure_beta(df, n_boot=400, seed=1)[0]
    assert m.interval_method.startswith("widest of bootstrap over seeds") and "2 seeds" in m.interval_method
    from scipy import stats

    half = stats.t.ppf(0.975, m.fit.n - 2) * m.fit.beta_stderr
    assert m.ci_low <= m.fit.beta - half + 1e-12 and m.ci_high >= m.fit.beta + half - 1e-12
    # the bootstrap alone, as measure_beta draws it (same seed), lies inside the reported interval
    betas = an.bootstrap_betas(an._seed_losses(df), 400, np.random.default_rng(1))
    lo, hi = np.percentile(betas, [2.5, 97.5])
    assert m.ci_low <= lo and m.ci_high >= hi
    assert m.ci_low == pytest.approx(min(lo, m.fit.beta - half))
    assert m.ci_high == pytest.approx(max(hi, m.fit.beta + half))


def test_one_seed_uses_the_t_interval_of_the_fit() -> None:
    m = an.measure_beta(bowl_summaries(noise=0.01, seeds=1, rng_seed=2))[0]
    assert m.interval_method.startswith("fit covariance")
    from scipy import stats

    half = stats.t.ppf(0.975, 3) * m.fit.beta_stderr
    assert m.ci_low == pytest.approx(m.fit.beta - half) and m.ci_high == pytest.approx(m.fit.beta + half)


def test_two_batch_sizes_give_an_undefined_interval() -> None:
    m = an.measure_beta(bowl_summaries(batches=(32, 256), seeds=3))[0]
    assert m.fit is not None and m.ci_low is None and m.ci_high is None
    assert "only two batch sizes" in m.interval_method
    assert math.isnan(m.fit.beta_stderr)


def test_fit_stderr_is_the_residual_one_and_zero_for_equal_lrs() -> None:
    from scipy import stats

    bs, lrs = [16, 32, 64, 128], [1e-3, 1.5e-3, 1.8e-3, 3.1e-3]
    fit = an.fit_power_law(bs, lrs)
    assert fit.beta_stderr == pytest.approx(stats.linregress(np.log10(bs), np.log10(lrs)).stderr, rel=1e-12)
    # every LR_opt equal: scipy's stderr is NaN, the residuals give exactly 0 (β = 0 is inside [0, 0])
    flat = an.fit_power_law([16, 32, 64], [1e-3, 1e-3, 1e-3])
    assert flat.beta == pytest.approx(0.0, abs=1e-12) and flat.beta_stderr == 0.0
    lo, hi = an._t_interval(flat)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be a positive integer, got 0"),
        ("batch_size", -16, "batch_size must be a positive integer, got -16"),
        ("lr", 0.0, "lr must be positive and finite, got 0.0"),
        ("lr", -1e-3, "lr must be positive and finite, got -0.001"),
        ("lr", float("inf"), "lr must be positive and finite, got inf"),
    ],
)
def test_a_bad_batch_size_or_lr_is_a_user_error_naming_the_run(column: str, value: float, message: str) -> None:
    df = bowl_summaries(seeds=1)
    first = df["run_id"][0]
    df = df.with_columns(pl.when(pl.col("run_id") == first).then(pl.lit(value)).otherwise(pl.col(column))
                         .cast(df.schema[column]).alias(column))
    for call in (an.measure_beta, an.config_table, lambda d: an.compare(d, experiment="synth")):
        with pytest.raises(PyphaseError, match=f"experiment 'synth' run '{re.escape(first)}': {re.escape(message)}"):
            call(df)


def test_a_run_counted_twice_is_a_user_error_not_another_seed() -> None:
    df = bowl_summaries(seeds=2)
    twice = pl.concat([df, df.head(1).with_columns(pl.lit("copy").alias("run_id"))])
    for call in (an.measure_beta, an.config_table, lambda d: an.compare(d, experiment="synth")):
        with pytest.raises(PyphaseError, match=r"2 runs have gradient_clip 1.0, optimizer adamw, batch_size 16, "
                                               r"lr 0.0001, seed 0; each would count as another seed"):
            call(twice)
    # the same config with another seed, or rows without a seed, are not duplicates
    other_seed = pl.concat([df, df.head(1).with_columns(pl.lit(7, dtype=df.schema["seed"]).alias("seed"), pl.lit("s7").alias("run_id"))])
    assert an.measure_beta(other_seed)[0].fit is not None
    unseeded = pl.concat([df, df]).with_columns(pl.lit(None, dtype=pl.Int64).alias("seed"))
    assert an.measure_beta(unseeded)[0].fit is not None


def test_a_prediction_with_a_bad_lr_or_baseline_is_a_user_error() -> None:
    df = bowl_summaries(seeds=1)
    pred = as_prediction(df).with_columns(pl.when(pl.int_range(pl.len()) == 0).then(0.0).otherwise(pl.col("lr")).alias("lr"))
    with pytest.raises(PyphaseError, match="^prediction: lr must be positive and finite, got 0.0"):
        an.compare(df, experiment="synth", prediction=pred)
    with pytest.raises(PyphaseError, match="^prediction preds/x: lr must be positive"):  # the files named
        an.compare(df, experiment="synth", prediction=pred, prediction_source="preds/x")
    measured = {32: 1e-3, 64: 2e-3}
    for spec in ({"lr_opt": {"32": 0}}, {"lr_opt": {"0": 1e-3}}, {"lr_opt": {"32": float("nan")}}, {"beta": float("inf")}):
        with pytest.raises(PyphaseError, match="prediction baseline 'zero'"):
            an.score_rules(measured, extra={"zero": spec})


def test_naive_beta_of_seed_phase_2_5_argmins_is_1_17() -> None:
    # seed 000: argmins [0.001, 0.003, 0.01, 0.01] at B = 32..256 gave β = 1.17, R² = 0.89
    fit = an.fit_power_law([32, 64, 128, 256], [0.001, 0.003, 0.01, 0.01])
    assert round(fit.beta, 2) == 1.17 and round(fit.r2, 2) == 0.89
    # the seed's "± 0.57" is 2 standard errors; the 95% t-interval (2 dof) is ± 1.22
    assert round(2 * fit.beta_stderr, 2) == 0.57


def test_naive_and_refined_fits_side_by_side() -> None:
    m = an.measure_beta(bowl_summaries(beta=0.5, noise=0.0, seeds=1))[0]
    assert m.naive is not None and m.fit is not None
    assert all(o.grid_lr in LRS for o in m.optima)
    assert m.naive.beta != m.fit.beta  # grid argmins snap to quarter decades


def test_groups_are_measured_per_clip_and_optimizer() -> None:
    df = pl.concat([bowl_summaries(clip=1.0, beta=0.5), bowl_summaries(clip=None, beta=1.0, c=1e-5)])
    ms = an.measure_beta(df, n_boot=200)
    assert [m.gradient_clip for m in ms] == [None, 1.0]
    assert abs(ms[0].fit.beta - 1.0) < BETA_TOL and abs(ms[1].fit.beta - 0.5) < BETA_TOL


def test_measure_beta_of_nothing_is_a_user_error() -> None:
    with pytest.raises(PyphaseError, match="no finished runs"):
        an.measure_beta(bowl_summaries().head(0))


def test_to_dict_is_strict_json() -> None:
    import json

    df = bowl_summaries(batches=(32, 256), seeds=1)
    json.dumps(an.measure_beta(df)[0].to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- clip-norm check
def test_clip_check_flags_after_equal_to_before() -> None:
    df = bowl_summaries(seeds=1)
    assert an.check_clip_norms(df).ok
    bad = df.with_columns(pl.col("avg_grad_norm_before").alias("avg_grad_norm_after"))
    check = an.check_clip_norms(bad)
    assert not check.ok and check.after_above_threshold > 0
    assert check.after_equals_before == bad.filter(pl.col("avg_clip_frequency") > 0).height


def test_clip_check_counts_regimes_of_configs() -> None:
    df = bowl_summaries(seeds=2)
    regimes = an.check_clip_norms(df).regimes
    assert sum(regimes.values()) == len(BATCHES) * len(LRS)
    assert regimes["pre-saturation"] > 0 and regimes["transition"] > 0


# --------------------------------------------------------------------------- rules and comparison
def test_rules_are_anchored_at_the_smallest_batch() -> None:
    measured = {32: 1e-3, 64: 2e-3, 128: 4e-3}
    scores = {s.name.split(" ")[0]: s for s in an.score_rules(measured, b_noise=100.0)}
    assert scores["linear"].log10_rmse == pytest.approx(0.0, abs=1e-12)
    assert scores["square-root"].lr_opt[128] == pytest.approx(2e-3)
    assert scores["square-root"].log10_rmse == pytest.approx(math.sqrt((0 + 0.150515**2 + 0.30103**2) / 3), rel=1e-4)
    ns = scores["noise-scale"].lr_opt
    assert ns[32] == pytest.approx(1e-3) and ns[64] == pytest.approx(1e-3 * (1 + 100 / 32) / (1 + 100 / 64))


def test_extra_baselines_from_prediction_json() -> None:
    measured = {32: 1e-3, 64: 2e-3}
    scores = an.score_rules(measured, extra={"mine": {"beta": 1.0}, "table": {"lr_opt": {"32": 1e-3, "64": 4e-3}}})
    by = {s.name: s for s in scores}
    assert by["mine"].log10_rmse == pytest.approx(0.0, abs=1e-12)
    assert by["table"].log10_rmse == pytest.approx(math.sqrt(0.30103**2 / 2), rel=1e-4)
    with pytest.raises(PyphaseError, match="baseline 'bad'"):
        an.score_rules(measured, extra={"bad": {"nope": 1}})


def test_perfect_prediction_passes_every_target() -> None:
    # β = 0.7 so that neither anchored rule (β = 1, 0.5) is itself the truth
    measured = bowl_summaries(beta=0.7, c=5e-5, noise=0.005, seeds=2, rng_seed=4)
    predicted = as_prediction(bowl_summaries(beta=0.7, c=5e-5, noise=0.0, seeds=2))
    cmp = an.compare(measured, experiment="synth", prediction=predicted, n_boot=200)
    passed = {t.name: t.passed for t in cmp.targets}
    assert passed == {"beta": True, "clip_frequency": True, "lr_opt": True, "regime": True, "rules": True}
    assert cmp.clip_mae == pytest.approx(0.0, abs=1e-12)
    assert cmp.regime_accuracy == 1.0 and cmp.unmatched_configs == 0
    assert len(cmp.clip_rows) == len(BATCHES) * len(LRS)


def test_wrong_prediction_fails_the_targets() -> None:
    measured = bowl_summaries(beta=0.5, noise=0.005, seeds=2)
    wrong = bowl_summaries(beta=1.0, c=2e-4 / 16**0.5, noise=0.0, seeds=2).with_columns(
        (1 - pl.col("avg_clip_frequency")).alias("avg_clip_frequency")
    )
    cmp = an.compare(measured, experiment="synth", prediction=as_prediction(wrong), n_boot=200)
    passed = {t.name: t.passed for t in cmp.targets}
    assert passed["beta"] is False and passed["lr_opt"] is False and passed["clip_frequency"] is False
    # this prediction's LRs equal the linear rule's anchored at B=16, so it is not better than that rule
    assert passed["rules"] is False
    g = cmp.groups[0]
    assert [r.ratio for r in g.lr_rows][0] == pytest.approx(1.0, rel=0.1)
    assert g.lr_rows[-1].ratio == pytest.approx(4.0, rel=0.1)  # (256/16)^(1-0.5)


def test_prediction_lr_opt_falls_back_to_its_fit_for_unsimulated_batches() -> None:
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    predicted = as_prediction(bowl_summaries(beta=0.5, noise=0.0, seeds=1, batches=(16, 64, 256)))
    g = an.compare(measured, experiment="s", prediction=predicted).groups[0]
    sources = {r.batch_size: r.predicted_from for r in g.lr_rows}
    assert sources == {
        16: "simulated grid",
        32: "predicted fit",
        64: "simulated grid",
        128: "predicted fit",
        256: "simulated grid",
    }
    assert all(r.ratio == pytest.approx(1.0, rel=1e-9) for r in g.lr_rows)


def test_regime_confusion_counts_configs() -> None:
    measured = bowl_summaries(seeds=1, noise=0.0)
    shifted = bowl_summaries(seeds=1, noise=0.0).with_columns(pl.lit(1.0).alias("avg_clip_frequency"))
    cmp = an.compare(measured, experiment="s", prediction=as_prediction(shifted))
    conf = cmp.regime_confusion
    assert sum(conf["pre-saturation"].values()) == sum(
        1 for r in cmp.clip_rows if r.measured_regime == "pre-saturation"
    )
    assert all(v == 0 for m in conf for p, v in conf[m].items() if p != "saturation")
    assert cmp.regime_accuracy == pytest.approx(conf["saturation"]["saturation"] / len(cmp.clip_rows))


def test_unclipped_configs_are_left_out_of_clip_scores() -> None:
    measured = bowl_summaries(clip=None, seeds=1)
    cmp = an.compare(measured, experiment="s", prediction=as_prediction(measured))
    assert cmp.clip_rows == () and cmp.clip_mae is None
    assert {t.name: t.passed for t in cmp.targets}["clip_frequency"] is None


def test_compare_without_prediction_scores_rules_only() -> None:
    cmp = an.compare(bowl_summaries(seeds=1), experiment="s", b_noise=50.0)
    assert all(t.passed is None for t in cmp.targets)
    assert len(cmp.groups[0].rules) == 3


def test_prediction_json_b_noise_must_be_positive() -> None:
    with pytest.raises(PyphaseError, match="b_noise"):
        an.compare(bowl_summaries(seeds=1), experiment="s", prediction_meta={"b_noise": -1})
    with pytest.raises(PyphaseError, match="'b_simple' must be a positive number"):
        an.compare(bowl_summaries(seeds=1), experiment="s", prediction_meta={"b_simple": "x"})


def test_noise_scale_from_b_simple_key_and_argument_wins() -> None:
    df = bowl_summaries(seeds=1)
    names = [r.name for r in an.compare(df, experiment="s", prediction_meta={"b_simple": 40.0}).groups[0].rules]
    assert names[-1] == "noise-scale (B_noise=40)"
    cmp = an.compare(df, experiment="s", prediction_meta={"b_simple": 40.0}, b_noise=7.0)
    assert cmp.groups[0].rules[-1].name == "noise-scale (B_noise=7)"


def test_prediction_table_missing_column_is_a_user_error() -> None:
    with pytest.raises(PyphaseError, match="missing column 'clip'"):
        an.prediction_summaries(as_prediction(bowl_summaries(seeds=1)).drop("clip"))


# --------------------------------------------------------------------------- grid-edge targets
def _targets(cmp: an.Comparison) -> dict[str, an.Target]:
    return {t.name: t for t in cmp.targets}


@pytest.mark.parametrize("factor", [1.0, 10.0])
def test_edge_only_lr_targets_are_not_scored(factor: float) -> None:
    # every minimum lies past the high edge of the grid: measured LR_opt are bounds, not optima.
    # The prediction equals the measurement (factor 1) or is 10x off (factor 10): either way no verdict.
    edge = bowl_summaries(batches=(64, 128, 256), lrs=LRS[:5], seeds=1, noise=0.0)
    assert all(o.at_edge for m in an.measure_beta(edge) for o in m.optima)
    pred = as_prediction(edge.with_columns(pl.col("lr") * factor))
    t = _targets(an.compare(edge, experiment="e", prediction=pred, n_boot=10))
    for name in ("beta", "lr_opt", "rules"):
        assert t[name].passed is None and t[name].reason == an.EDGE_REASON == "LR_opt at grid edge"
        assert t[name].value == "not scored: LR_opt at grid edge (B=64, 128, 256)"
    assert t["clip_frequency"].passed is not None  # clip scores do not rest on LR_opt


def test_one_lr_per_batch_size_is_not_scored() -> None:
    # two clip groups with one LR per batch size each: the edge batch sizes are named once
    one = pl.concat(
        [bowl_summaries(batches=(32, 256), lrs=(1e-3,), seeds=1, clip=c) for c in (None, 1.0)], how="vertical_relaxed"
    )
    t = _targets(an.compare(one, experiment="o", prediction=as_prediction(one), n_boot=10))
    assert all(t[n].passed is None and t[n].reason == an.EDGE_REASON for n in ("beta", "lr_opt", "rules"))
    assert t["lr_opt"].value == "not scored: LR_opt at grid edge (B=32, 256)"


def test_partly_edge_targets_score_the_interior_batch_sizes_only() -> None:
    # B=256's minimum lies past the high edge of LRS[:6]; B=16, 32, 64 are interior (β = 0.7, so
    # neither anchored rule is itself the truth)
    measured = bowl_summaries(beta=0.7, c=5e-5, batches=(16, 32, 64, 256), lrs=LRS[:6], seeds=1, noise=0.0)
    assert [o.at_edge for o in an.measure_beta(measured)[0].optima] == [False, False, False, True]
    # a prediction that is exact at the interior B and 10x off at the edge B still passes lr_opt and rules
    off_at_edge = measured.with_columns(
        pl.when(pl.col("batch_size") == 256).then(pl.col("lr") * 10).otherwise(pl.col("lr")).alias("lr")
    )
    t = _targets(an.compare(measured, experiment="p", prediction=as_prediction(off_at_edge), n_boot=10))
    assert t["lr_opt"].passed is True
    assert t["lr_opt"].value == "worst factor 1.00 (B=256 left out: LR_opt at grid edge)"
    assert t["rules"].passed is True and "(over B=16, 32, 64; the rest at the grid edge)" in t["rules"].value
    # 10x off at an interior B fails
    off_inside = measured.with_columns(
        pl.when(pl.col("batch_size") == 32).then(pl.col("lr") * 10).otherwise(pl.col("lr")).alias("lr")
    )
    t = _targets(an.compare(measured, experiment="p", prediction=as_prediction(off_inside), n_boot=10))
    assert t["lr_opt"].passed is False and t["lr_opt"].reason is None and t["rules"].passed is False


def test_beta_needs_two_interior_optima() -> None:
    # B=16 interior, B=128 and B=256 past the high edge: the slope rests on bounds
    measured = bowl_summaries(batches=(16, 128, 256), lrs=LRS[:6], seeds=1, noise=0.0)
    assert [o.at_edge for o in an.measure_beta(measured)[0].optima] == [False, True, True]
    t = _targets(an.compare(measured, experiment="b", prediction=as_prediction(measured), n_boot=10))
    assert t["beta"].passed is None and t["beta"].value == "not scored: LR_opt at grid edge (B=128, 256)"
    assert t["rules"].passed is None  # the anchor's only interior partner is missing
    assert t["lr_opt"].passed is True  # B=16 is a measured optimum, and the prediction matches it


# --------------------------------------------------------------------------- B_noise from a calibration
def _calibration(fit_step: int = 200, b_simple_at_fit: float = 31.5) -> dict:
    points = [
        {"step": 0, "noise": {"b_simple": 0.36}},
        {"step": 200, "noise": {"b_simple": b_simple_at_fit}},
        {"step": 1000, "noise": {"b_simple": 90.0}},
    ]
    return {"provenance": {"measurements": {"fit_step": fit_step, "points": points}}}


def test_b_simple_is_read_at_the_fit_step() -> None:
    assert an.b_simple_at_fit_step(_calibration()) == (31.5, 200)
    assert an.b_simple_at_fit_step(_calibration(fit_step=1000)) == (90.0, 1000)
    assert an.b_simple_at_fit_step(_calibration(fit_step=0)) == (0.36, 0)


@pytest.mark.parametrize(
    ("cal", "message"),
    [
        ({"d": 4}, "c.json: no provenance.measurements.points"),
        (_calibration(fit_step=300), "c.json: no measured point at fit_step 300"),
        ({"provenance": {"measurements": {"points": []}}}, "c.json: provenance.measurements.fit_step must be an integer"),
        (_calibration(b_simple_at_fit=-1.0), "c.json step 200: 'noise.b_simple' must be a positive number, got -1.0"),
        ({"provenance": {"measurements": {"fit_step": 0, "points": [{"step": 0}]}}}, "c.json: the point at fit_step 0"),
    ],
)
def test_b_simple_errors_name_the_problem(cal: dict, message: str) -> None:
    with pytest.raises(PyphaseError, match=re.escape(message)):
        an.b_simple_at_fit_step(cal, "c.json")


def test_compare_reports_where_b_noise_came_from() -> None:
    df = bowl_summaries(seeds=1)
    cmp = an.compare(df, experiment="s", prediction_meta={"b_simple": 40.0})
    assert cmp.b_noise == 40.0 and "'b_simple'" in cmp.b_noise_source and "initialisation" in cmp.b_noise_source
    cmp = an.compare(df, experiment="s", prediction_meta={"b_simple": 40.0}, b_noise=31.5, b_noise_source="cal step 200")
    assert (cmp.b_noise, cmp.b_noise_source) == (31.5, "cal step 200")
    assert cmp.groups[0].rules[-1].name == "noise-scale (B_noise=31.5)"
    assert cmp.to_dict()["b_noise_source"] == "cal step 200"
    assert an.compare(df, experiment="s").b_noise is None
    with pytest.raises(PyphaseError, match="B_noise: 'b_noise' must be a positive number"):
        an.compare(df, experiment="s", b_noise=0.0)


# --------------------------------------------------------------------------- predicted LR_opt on grid edges
def test_a_prediction_with_every_lr_opt_on_a_grid_edge_extrapolates_nothing() -> None:
    # measured: interior optima at every B. Predicted: only B=16 and 64 simulated, both minima far below
    # the grid (LR_opt <= 1e-4, a bound): its "β" is the grid's slope, so its line must not stand in
    # for LR_opt at B=32, 128, 256, and no target may rest on the bounds.
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    pred = as_prediction(bowl_summaries(beta=0.5, c=1e-8, batches=(16, 64), noise=0.0, seeds=1))
    cmp = an.compare(measured, experiment="s", prediction=pred, n_boot=10)
    g = cmp.groups[0]
    assert g.predicted is not None and g.predicted.all_at_edge and g.predicted.fit is not None
    rows = {r.batch_size: r for r in g.lr_rows}
    for b in (32, 128, 256):
        assert rows[b].predicted is None and rows[b].ratio is None
        assert rows[b].predicted_from == an.SOURCE_NOT_PREDICTED_EDGE == "not predicted: LR_opt on grid edges"
        assert rows[b].predicted_at_edge is True
    for b in (16, 64):  # the simulated bounds are shown, flagged
        assert rows[b].predicted_from == "simulated grid" and rows[b].predicted_at_edge is True
        assert rows[b].predicted == pytest.approx(LRS[0])
        assert rows[b].predicted_edge == "low"
    assert g.prediction_log10_rmse is None  # no clean prediction to score
    t = _targets(cmp)
    for name in ("beta", "rules"):
        assert t[name].passed is None and t[name].reason == an.PREDICTED_EDGE_REASON, (name, t[name])
    assert t["beta"].value == "not scored: predicted LR_opt at grid edge (clip=1/adamw: β not predicted)"
    # but the bounds LR_opt <= 1e-4 at B=16, 64 are falsified: measured 8e-4 and 1.6e-3
    assert t["lr_opt"].passed is False and t["lr_opt"].reason is None
    assert t["lr_opt"].value == ("bound LR_opt ≤ 0.0001 violated at B=16, 64 (worst x16.00)"
                                 " (B=32, 128, 256 left out: predicted LR_opt at grid edge)")
    d = g.to_dict()
    assert [r["predicted_at_edge"] for r in d["lr_opt"]] == [True] * 5
    assert [r["predicted_edge"] for r in d["lr_opt"]] == ["low", None, "low", None, None]
    assert d["lr_opt"][0]["bound_violation"] == pytest.approx(8.0) and d["lr_opt"][1]["bound_violation"] is None


def test_a_fit_through_some_predicted_edge_bounds_is_flagged_and_not_scored() -> None:
    # predicted B=16, 64 interior, B=256 past the high edge of LRS[:7] (a bound): the line through
    # them gives B=32 and 128 a value, flagged as bound-derived, and only B=16 and 64 are scored as
    # values; B=256's bound (LR_opt >= 10^-2.5) holds (measured 3.2e-3), the fit rows are left out.
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    pred = as_prediction(bowl_summaries(beta=0.5, batches=(16, 64, 256), lrs=LRS[:7], noise=0.0, seeds=1))
    cmp = an.compare(measured, experiment="s", prediction=pred, n_boot=10)
    g = cmp.groups[0]
    assert [o.edge for o in g.predicted.optima] == [None, None, "high"]
    rows = {r.batch_size: r for r in g.lr_rows}
    for b in (32, 128):
        assert rows[b].predicted_from == an.SOURCE_FIT_EDGE == "predicted fit (through grid-edge bounds)"
        assert rows[b].predicted_at_edge is True and rows[b].predicted is not None
    assert rows[256].predicted_from == "simulated grid" and rows[256].predicted_at_edge is True
    assert [rows[b].predicted_at_edge for b in (16, 64)] == [False, False]
    # the prediction's error rests on the clean B only (exact there)
    assert g.prediction_log10_rmse == pytest.approx(0.0, abs=1e-9)
    t = _targets(cmp)
    assert t["lr_opt"].passed is True
    assert rows[256].predicted_edge == "high" and rows[256].bound_violation == 1.0
    assert rows[32].predicted_edge is None and rows[32].bound_violation is None
    assert t["lr_opt"].value == ("worst factor 1.00; bound LR_opt ≥ 0.00316 holds at B=256 (within factor 1.5)"
                                 " (B=32, 128 left out: predicted LR_opt at grid edge)")
    assert t["rules"].passed is True and "(over B=16, 64; the rest at the grid edge)" in t["rules"].value


def test_a_clean_predicted_fit_still_stands_in_for_unsimulated_batches() -> None:
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    pred = as_prediction(bowl_summaries(beta=0.5, batches=(16, 64, 256), noise=0.0, seeds=1))
    g = an.compare(measured, experiment="s", prediction=pred, n_boot=10).groups[0]
    assert not any(r.predicted_at_edge for r in g.lr_rows)
    assert {r.predicted_from for r in g.lr_rows} == {"simulated grid", "predicted fit"}


# --------------------------------------------------------------------------- predicted grid-edge bounds, falsified
def _mixed_prediction(bound_batches: tuple[int, ...], **bound: object) -> pl.DataFrame:
    """Every B of BATCHES simulated: the ones in `bound_batches` from a bowl with `bound` (its
    minimum on a grid edge), the rest exactly at the measured optimum (a clean, exact prediction)."""
    clean = [b for b in BATCHES if b not in bound_batches]
    parts = [bowl_summaries(batches=tuple(clean), noise=0.0, seeds=1)] if clean else []
    parts.append(bowl_summaries(batches=bound_batches, noise=0.0, seeds=1, **bound))
    return as_prediction(pl.concat(parts, how="vertical_relaxed"))


def test_predicted_low_edge_bounds_violated_beyond_the_factor_fail_lr_opt() -> None:
    # every predicted LR_opt is "<= 1e-4" (minimum far below the grid); measured 8e-4 .. 3.2e-3
    measured = bowl_summaries(noise=0.0, seeds=1)
    cmp = an.compare(measured, experiment="s", prediction=_mixed_prediction(BATCHES, c=1e-8), n_boot=10)
    rows = {r.batch_size: r for r in cmp.groups[0].lr_rows}
    assert all(r.predicted_edge == "low" and r.predicted == pytest.approx(1e-4) for r in rows.values())
    assert rows[16].bound_violation == pytest.approx(8.0) and rows[256].bound_violation == pytest.approx(32.0)
    t = _targets(cmp)
    assert t["lr_opt"].passed is False and t["lr_opt"].reason is None
    assert t["lr_opt"].value == "bound LR_opt ≤ 0.0001 violated at B=16, 32, 64, 128, 256 (worst x32.00)"
    for name in ("beta", "rules"):  # a line through bounds, an RMSE of bounds: still nothing to score
        assert t[name].passed is None and t[name].reason == an.PREDICTED_EDGE_REASON


@pytest.mark.parametrize(
    ("bound", "value"),
    [
        # "LR_opt >= 10^-3.5" on LRS[:3]: every measured LR_opt (8e-4 .. 3.2e-3) lies above it
        ({"lrs": LRS[:3]}, "bound LR_opt ≥ 0.000316 holds at B=16, 32, 64, 128, 256 (within factor 1.5)"),
        # "LR_opt <= 6e-4 / 1.2e-3" (lowest LR tried) at B=16 / 64: measured 8e-4 / 1.6e-3 lie beyond
        # by x1.33, inside the target's factor
        ({"lrs": (6e-4, 1e-3), "c": 1e-8, "batches": (16,)}, "bound LR_opt ≤ 0.0006 holds at B=16 (within factor 1.5)"),
    ],
)
def test_predicted_bounds_that_hold_leave_lr_opt_not_scored(bound: dict, value: str) -> None:
    measured = bowl_summaries(noise=0.0, seeds=1)
    batches = bound.pop("batches", BATCHES)
    pred = as_prediction(bowl_summaries(batches=batches, noise=0.0, seeds=1, **bound))
    t = _targets(an.compare(measured, experiment="s", prediction=pred, n_boot=10))
    assert t["lr_opt"].passed is None and t["lr_opt"].reason == an.PREDICTED_EDGE_REASON
    assert t["lr_opt"].value.startswith("not scored: predicted LR_opt at grid edge (B=")
    assert t["lr_opt"].value.endswith(value)


def test_a_clean_prediction_within_the_factor_fails_on_a_violated_bound() -> None:
    # B=16..128 predicted exactly; B=256 predicted "LR_opt <= 1e-4", measured 3.2e-3 (x32)
    measured = bowl_summaries(noise=0.0, seeds=1)
    cmp = an.compare(measured, experiment="s", prediction=_mixed_prediction((256,), c=1e-8), n_boot=10)
    t = _targets(cmp)
    assert t["lr_opt"].passed is False
    assert t["lr_opt"].value == "worst factor 1.00; bound LR_opt ≤ 0.0001 violated at B=256 (worst x32.00)"
    assert t["rules"].passed is not None and "(over B=16, 32, 64, 128; the rest at the grid edge)" in t["rules"].value


def test_a_clean_prediction_within_the_factor_passes_when_its_bounds_hold() -> None:
    # B=16..128 predicted exactly; B=256 predicted "LR_opt >= 10^-2.5" (LRS[:7]), measured 3.2e-3
    measured = bowl_summaries(noise=0.0, seeds=1)
    cmp = an.compare(measured, experiment="s", prediction=_mixed_prediction((256,), lrs=LRS[:7]), n_boot=10)
    t = _targets(cmp)
    assert t["lr_opt"].passed is True
    assert t["lr_opt"].value == "worst factor 1.00; bound LR_opt ≥ 0.00316 holds at B=256 (within factor 1.5)"
    # a clean value off by more than the factor still fails, bounds or not
    off = _mixed_prediction((256,), lrs=LRS[:7]).with_columns(
        pl.when(pl.col("batch_size") == 16).then(pl.col("lr") * 2).otherwise(pl.col("lr")).alias("lr"))
    t = _targets(an.compare(measured, experiment="s", prediction=off, n_boot=10))
    assert t["lr_opt"].passed is False and t["lr_opt"].value.startswith("worst factor 2.00; bound LR_opt ≥")


def test_bound_violation_reads_the_side_of_the_bound() -> None:
    row = an.LrOptRow(32, 2e-4, False, 1e-4, an.SOURCE_GRID, True, 0.5, "low")
    assert row.bound_violation == pytest.approx(2.0)
    assert an.LrOptRow(32, 5e-5, False, 1e-4, an.SOURCE_GRID, True, 2.0, "low").bound_violation == 1.0
    assert an.LrOptRow(32, 5e-5, False, 1e-4, an.SOURCE_GRID, True, 2.0, "high").bound_violation == pytest.approx(2.0)
    assert an.LrOptRow(32, 2e-4, False, 1e-4, an.SOURCE_GRID, True, 0.5, "high").bound_violation == 1.0
    # a measured bound, a line through bounds, a single LR: no side to read
    assert an.LrOptRow(32, 2e-4, True, 1e-4, an.SOURCE_GRID, True, 0.5, "low").bound_violation is None
    assert an.LrOptRow(32, 2e-4, False, 1e-4, an.SOURCE_FIT_EDGE, True, 0.5).bound_violation is None


def test_a_predicted_batch_size_where_every_lr_diverged_does_not_make_edge_bounds_a_prediction() -> None:
    # predicted bounds at B=16, 64 (low edge) plus B=128 with every LR diverged: still "β not
    # predicted", nothing extrapolated (as without the diverged batch size)
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    bounds = as_prediction(bowl_summaries(beta=0.5, c=1e-8, batches=(16, 64), noise=0.0, seeds=1))
    dead = as_prediction(bowl_summaries(beta=0.5, batches=(128,), noise=0.0, seeds=1)).with_columns(
        pl.lit(True).alias("diverged"), pl.lit(float("nan")).alias("final_loss"))
    for pred in (bounds, pl.concat([bounds, dead])):
        g = an.compare(measured, experiment="s", prediction=pred, n_boot=10).groups[0]
        assert g.predicted.all_at_edge
        extrapolated = [r for r in g.lr_rows if r.batch_size not in (16, 64, 128)]
        assert extrapolated and all(r.predicted is None and r.predicted_at_edge for r in extrapolated)


def test_rules_not_scored_for_lack_of_predictions_past_the_anchor_blames_no_edge() -> None:
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    anchor_only = as_prediction(bowl_summaries(beta=0.5, batches=(16,), noise=0.0, seeds=1))  # interior
    rules = next(t for t in an.compare(measured, experiment="s", prediction=anchor_only, n_boot=10).targets
                 if t.name == "rules")
    assert rules.passed is None and rules.reason != an.PREDICTED_EDGE_REASON and "B=)" not in rules.value


def test_rules_blame_no_edge_at_the_anchor_when_nothing_past_it_is_predicted() -> None:
    measured = bowl_summaries(beta=0.5, noise=0.0, seeds=1)
    anchor_edge = as_prediction(bowl_summaries(beta=0.5, c=1e-8, batches=(16,), noise=0.0, seeds=1))
    rules = next(t for t in an.compare(measured, experiment="s", prediction=anchor_edge, n_boot=10).targets
                 if t.name == "rules")
    assert rules.passed is None and rules.reason != an.PREDICTED_EDGE_REASON


def test_a_prediction_of_another_optimizer_says_why_nothing_is_scored() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1).with_columns(pl.lit("sgd").alias("optimizer"))
    cmp = an.compare(measured, experiment="s", prediction=as_prediction(bowl_summaries(noise=0.0, seeds=1)), n_boot=10)
    assert all(t.passed is None for t in cmp.targets)
    assert all(t.reason.startswith("the prediction has no group of the runs' clip and optimizer (prediction: "
                                   "clip=1/adamw; runs: clip=1/sgd)") for t in cmp.targets)


# --------------------------------------------------------------------------- steps and optimizer settings
TRAINER_SETTINGS = {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "momentum": 0.9, "warmup_steps": 0,
                    "schedule": "constant"}


def _prediction_meta(optimizer: str = "adamw", steps: int = 1000, **settings: object) -> dict:
    """What `pyphase predict` records of its simulation in prediction.json."""
    return {"kind": "pyphase.prediction", "optimizer": optimizer, "steps": steps,
            "optimizer_settings": TRAINER_SETTINGS | settings}


def _configs(runs: pl.DataFrame, **settings: object) -> dict[str, dict]:
    """Each run's config.json (run_id -> the RunConfig's fields that matter here)."""
    return {r: {"steps": 1000, "optimizer": "adamw"} | TRAINER_SETTINGS | settings for r in runs["run_id"]}


def _warnings(measured: pl.DataFrame, meta: dict, configs: dict | None, predicted: pl.DataFrame | None = None
              ) -> tuple[str, ...]:
    pred = as_prediction(predicted if predicted is not None else measured)
    cmp = an.compare(measured, experiment="s", prediction=pred, prediction_meta=meta, run_configs=configs, n_boot=10)
    assert cmp.to_dict()["warnings"] == list(cmp.warnings)
    return cmp.warnings


def test_a_prediction_of_the_runs_steps_and_settings_warns_of_nothing() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1)
    assert _warnings(measured, _prediction_meta(), _configs(measured)) == ()
    # momentum is no adamw setting: runs and prediction may record any value of it
    assert _warnings(measured, _prediction_meta(momentum=0.0), _configs(measured, momentum=0.5)) == ()
    # nor are betas and eps sgd settings
    sgd = measured.with_columns(pl.lit("sgd").alias("optimizer"))
    assert _warnings(sgd, _prediction_meta("sgd", betas=[0.5, 0.5], eps=1e-3), _configs(sgd, optimizer="sgd")) == ()


def test_other_steps_and_settings_than_the_runs_used_are_warned_of() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1)
    meta = _prediction_meta(steps=5000, betas=[0.9, 0.95], eps=1e-6, weight_decay=0.0, warmup_steps=100,
                            schedule="cosine")
    assert _warnings(measured, meta, _configs(measured)) == (
        "The prediction simulated 5000 steps, the runs trained 1000.",
        "The prediction simulated betas (0.9, 0.95), the runs used (0.9, 0.999).",
        "The prediction simulated eps 1e-06, the runs used 1e-08.",
        "The prediction simulated weight decay 0, the runs used 0.01.",
        "The prediction simulated warmup steps 100, the runs used 0.",
        "The prediction simulated schedule cosine, the runs used constant.",
    )
    sgd = measured.with_columns(pl.lit("sgd").alias("optimizer"))
    assert _warnings(sgd, _prediction_meta("sgd", momentum=0.5), _configs(sgd, optimizer="sgd")) == (
        "The prediction simulated momentum 0.5, the runs used 0.9.",)


def test_close_settings_print_apart_and_odd_recorded_values_are_passed_over() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1)
    sgd = measured.with_columns(pl.lit("sgd").alias("optimizer"))
    # values that differ print differently (repr, not 6 significant digits)
    meta = _prediction_meta("sgd", momentum=0.9000001, weight_decay=0.0100000001)
    assert _warnings(sgd, meta, _configs(sgd, optimizer="sgd")) == (
        "The prediction simulated momentum 0.9000001, the runs used 0.9.",
        "The prediction simulated weight decay 0.0100000001, the runs used 0.01.",
    )
    # a number written as text is no recorded setting (only the schedule is text); an integer
    # beyond float's range neither (it raised OverflowError)
    assert _warnings(sgd, _prediction_meta("sgd", momentum="0.5"), _configs(sgd, optimizer="sgd")) == ()
    assert _warnings(sgd, _prediction_meta("sgd", momentum=0.5), _configs(sgd, optimizer="sgd", momentum="0.9")) == ()
    huge = _prediction_meta("sgd") | {"steps": 10**400}
    assert _warnings(sgd, huge, _configs(sgd, optimizer="sgd")) == ()


def test_runs_with_several_values_are_warned_of_once_with_every_value() -> None:
    """Two clip groups (one sentence for both) whose runs trained 1000 and 2000 steps."""
    unclipped = bowl_summaries(noise=0.0, seeds=1, clip=None).with_columns(pl.lit(2000, dtype=pl.Int64).alias("num_steps"))
    measured = pl.concat([bowl_summaries(noise=0.0, seeds=1), unclipped])
    configs = _configs(measured) | {r: _configs(measured)[r] | {"weight_decay": 0.1}
                                    for r in measured.filter(pl.col("gradient_clip").is_null())["run_id"]}
    assert _warnings(measured, _prediction_meta(steps=1000), configs) == (
        "The prediction simulated 1000 steps, the runs trained 1000 and 2000.",
        "The prediction simulated weight decay 0.01, the runs used 0.01 and 0.1.",
    )
    # only the runs of groups the prediction is matched with count: it simulated clip = 1 only
    clipped = bowl_summaries(noise=0.0, seeds=1)
    assert _warnings(measured, _prediction_meta(steps=1000), configs, predicted=clipped) == ()


def test_settings_either_side_does_not_record_are_passed_over() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1)
    meta = _prediction_meta(steps=5000, weight_decay=0.0)
    # runs without configs (older results): steps from the summaries only
    assert _warnings(measured, meta, None) == ("The prediction simulated 5000 steps, the runs trained 1000.",)
    # a config without the key, and summaries without num_steps: nothing to compare
    old = {r: {k: v for k, v in c.items() if k not in ("steps", "weight_decay")} for r, c in _configs(measured).items()}
    no_steps = measured.with_columns(pl.lit(None, dtype=pl.Int64).alias("num_steps"))
    assert _warnings(no_steps, meta, old) == ()
    # ...but a config's steps stand in for a missing num_steps
    assert _warnings(no_steps, meta, _configs(measured))[0] == ("The prediction simulated 5000 steps, the runs "
                                                                "trained 1000.")
    # a prediction JSON without steps or settings (or none at all), or one of another optimizer
    assert _warnings(measured, {"b_noise": 50.0}, _configs(measured, weight_decay=0.5)) == ()
    assert _warnings(measured, None, _configs(measured, weight_decay=0.5)) == ()
    assert _warnings(measured, _prediction_meta("sgd", steps=5000), _configs(measured)) == ()
    # no prediction: no warnings
    assert an.compare(measured, experiment="s", prediction_meta=meta, run_configs=_configs(measured)).warnings == ()


def test_a_prediction_of_another_optimizer_warns_of_no_settings() -> None:
    measured = bowl_summaries(noise=0.0, seeds=1).with_columns(pl.lit("sgd").alias("optimizer"))
    meta = _prediction_meta(steps=5000, weight_decay=0.0)
    assert _warnings(measured, meta, _configs(measured), predicted=bowl_summaries(noise=0.0, seeds=1)) == ()
