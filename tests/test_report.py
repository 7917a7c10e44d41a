"""Markdown reports carry the measured numbers, link plots that exist, and say in words what the
numbers mean: β with its interval, edge warnings, clip saturation with the after-clip norm check,
and the unigram plateau."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats
from test_analysis import LRS, as_prediction, bowl_summaries
from test_results import SEED_3A_CSV, write_committed, write_runs

from pyphase import analysis as an
from pyphase import report as rp
from pyphase.errors import PyphaseError
from pyphase.results import CorpusEntropies, scan

ENTROPIES = {"corpus_entropies": {"unigram": 3.3128, "bigram": 2.4526, "vocab_size": 65}}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("r") / "runs"
    write_runs(root, bowl_summaries(seeds=2, lrs=LRS[::2], experiment="synth"))
    (root / "synth" / "provenance.json").write_text(json.dumps(ENTROPIES))
    return root


@pytest.fixture(scope="module")
def prediction_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pred")
    as_prediction(bowl_summaries(beta=0.55, c=1.8e-4, seeds=2, noise=0.0, lrs=LRS[::2])).write_parquet(
        d / "trajectories.parquet"
    )
    (d / "summary.json").write_text(json.dumps({"b_noise": 80.0}))
    return d


def test_report_contains_the_measured_numbers_and_plots(synth_root: Path, prediction_dir: Path, tmp_path: Path) -> None:
    out = rp.write_report(["synth"], root=synth_root, prediction=prediction_dir, out=tmp_path / "REPORT.md", n_boot=200)
    text = out.read_text()
    m = an.measure_beta(scan(synth_root, "synth").summaries.collect(), n_boot=200)[0]
    assert f"LR_opt ∝ B^{m.fit.beta:.2f} (95% interval {m.ci_low:.2f} to {m.ci_high:.2f}" in text
    assert f"β = {m.naive.beta:.2f}" in text
    for o in m.optima:
        assert f"| {o.batch_size} | {rp.fmt(o.lr_opt)} |" in text
    assert "| beta | predicted β inside measured 95% interval" in text and "PASS" in text
    assert "noise-scale (B_noise=80)" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 6 and "plots/synth_beta_along_training.png" in links
    assert all((out.parent / link).is_file() for link in links)
    assert "left the unigram plateau" in text and "After-clip norms are consistent" in text


def test_seed_phase_3a_report_in_words(tmp_path: Path) -> None:
    write_committed(tmp_path / "results", "phase3a", SEED_3A_CSV, ENTROPIES)
    out = rp.write_report(["phase3a"], root=tmp_path / "results", out=tmp_path / "results" / "phase3a" / "REPORT.md")
    text = out.read_text()
    # B=128: parabola through LR 0.03/0.05/0.1; B=256: its 0.1 neighbour has converged=False -> grid 0.05
    x = np.log10([0.03, 0.05, 0.10])
    a, b, _ = np.polyfit(x, [3.879, 3.321, 3.739], 2)
    lr128 = 10 ** (-b / (2 * a))
    assert f"| clip=1 | 128 | {rp.fmt(lr128)} | 0.05 |" in text
    assert "| clip=1 | 256 | 0.05 | 0.05 |" in text
    beta = np.log10(0.05 / lr128) / np.log10(2)
    assert f"LR_opt ∝ B^{beta:.2f} (undefined: only two batch sizes" in text
    assert "grid-argmin method gives β = 0.00" in text
    assert (
        "After-clip norms look mismeasured: 10 runs report a mean after-clip norm above the threshold, "
        "10 report after = before although clipping fired (seed 000's error) and 0 report after above before"
        in text
    )
    assert "Of 10 clipped configs, 10 are saturated" in text
    assert "The best mean final validation loss is 3.321" in text and "still on the unigram plateau" in text
    # the B=256, LR=0.1 run has finite losses and converged=False: not a divergence, but infinite loss in the fits
    assert (
        "No run diverged (a non-finite loss or gradient norm at a recorded step, or a non-finite final val loss); "
        "1 of 10 runs ended at a finite loss with converged = false and count as infinite loss in the LR_opt fits."
        in text
    )
    assert "| phase3a | clip=1 |" in text and "| 0 of 10 (+1 not converged, finite) |" in text


def test_edge_warning_in_words() -> None:
    m = an.measure_beta(bowl_summaries(batches=(16, 32, 256), lrs=LRS[:6], seeds=1, noise=0.0))[0]
    words = rp.beta_words(m)
    assert "⚠ B=256: minimum at the high edge of the grid: LR_opt >= 0.001778" in words
    assert "β is a bound, not a measurement" in words


def test_all_edges_means_beta_not_measured() -> None:
    df = bowl_summaries(batches=(128, 256), lrs=LRS[:5], seeds=1, noise=0.0)
    words = rp.beta_words(an.measure_beta(df)[0])
    assert words.startswith("**clip=1/adamw**: ⚠ β is not measured: every batch size's minimum in the fit is on a grid edge")
    assert "LR_opt ∝" not in words


def test_beta_meaning_names_consistent_rules() -> None:
    m = an.measure_beta(bowl_summaries(beta=0.5, noise=0.005, seeds=3, rng_seed=7), n_boot=300)[0]
    words = rp.beta_words(m)
    assert "consistent with the square-root rule (β=0.5)" in words
    assert "excludes no batch dependence (β=0) and the linear rule (β=1)" in words


@pytest.mark.parametrize(
    ("best", "phrase"),
    [
        (3.5, "still on the unigram plateau"),
        (3.0, "without reaching bigram statistics"),
        (2.0, "uses more than one character of context"),
    ],
)
def test_plateau_words(best: float, phrase: str) -> None:
    configs = pl.DataFrame(
        {"batch_size": [32], "lr": [0.01], "gradient_clip": [1.0], "optimizer": ["adamw"], "loss": [best]}
    )
    assert phrase in rp.plateau_words(configs, CorpusEntropies(3.3128, 2.4526, 65, "test"))
    assert "cannot be said" in rp.plateau_words(configs, None)


def test_multi_experiment_report_default_path(
    synth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_committed(tmp_path / "results", "phase3a", SEED_3A_CSV)
    monkeypatch.chdir(tmp_path)
    out = rp.write_report(["synth", "phase3a"], root=[synth_root, Path("results")], n_boot=100)
    assert out == Path("results/REPORT.md")
    text = out.read_text()
    assert text.index("## synth") < text.index("## phase3a")
    assert (Path("results/plots/phase3a_lr_opt.png")).is_file()
    assert rp.default_report_path(["phase3a"]) == Path("results/phase3a/REPORT.md")


def test_prediction_per_experiment_subfolder(tmp_path: Path, prediction_dir: Path) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "t.parquet").write_bytes((prediction_dir / "trajectories.parquet").read_bytes())
    assert rp.prediction_for(tmp_path, "synth").source == str(tmp_path / "synth")
    assert rp.prediction_for(prediction_dir, "other").source == str(prediction_dir)


def test_compare_text_json_is_strict(synth_root: Path, prediction_dir: Path) -> None:
    data = json.loads(rp.compare_text("synth", root=synth_root, prediction=prediction_dir, as_json=True, n_boot=50))
    assert data["experiment"] == "synth" and len(data["targets"]) == 5
    assert data["groups"][0]["rules"][2]["name"] == "noise-scale (B_noise=80)"


def test_report_needs_an_experiment() -> None:
    with pytest.raises(PyphaseError, match="at least one experiment"):
        rp.write_report([])


def test_corpus_option_gives_entropies_and_checks_its_checksum(tmp_path: Path) -> None:
    text = "abcab" * 2000
    (tmp_path / "c.txt").write_text(text)
    from pyphase.data import load_corpus

    corpus = load_corpus(tmp_path / "c.txt")
    lines = SEED_3A_CSV.splitlines()
    csv = "\n".join([lines[0] + ",corpus_sha256"] + [line + f",{corpus.sha256}" for line in lines[1:]]) + "\n"
    write_committed(tmp_path / "results", "p", csv)
    out = rp.write_report(["p"], root=tmp_path / "results", corpus=tmp_path / "c.txt", out=tmp_path / "R.md", n_boot=10)
    assert f"the unigram entropy {corpus.unigram_entropy:.3f}" in out.read_text()
    (tmp_path / "other.txt").write_text("xyz" * 1000)
    with pytest.raises(
        PyphaseError, match=r"--corpus .*other.txt: sha256 .* is not the corpus experiment 'p' trained on"
    ):
        rp.write_report(["p"], root=tmp_path / "results", corpus=tmp_path / "other.txt", out=tmp_path / "R.md")


# --------------------------------------------------------------------------- diagnostics from step metrics
def _steps_for(summaries: pl.DataFrame, val_of, train_of, norm_of=lambda r, s: 1.0) -> pl.DataFrame:
    """Step rows every 50 steps to 1000 (evaluations every 100, step 0 eval-only), from functions of
    (summary row, step)."""
    rows = []
    for r in summaries.iter_rows(named=True):
        rows.append((r["run_id"], 0, None, None, None, None, None, val_of(r, 0), 30.0))
        for s in range(50, 1001, 50):
            ev = s % 100 == 0
            rows.append(
                (r["run_id"], s, r["lr"], train_of(r, s), norm_of(r, s), min(norm_of(r, s), 1.0), norm_of(r, s) > 1.0,
                 val_of(r, s) if ev else None, 30.0 + r["lr"] * s if ev else None)
            )
    cols = ["run_id", "step", "lr", "train_loss", "grad_norm_before", "grad_norm_after", "clipped", "val_loss",
            "weight_norm"]
    return pl.DataFrame(rows, schema=cols, orient="row")


def test_run_diagnostics_best_val_late_scatter_and_largest_norm() -> None:
    s = bowl_summaries(batches=(32,), lrs=(1e-3, 1e-2), seeds=1)
    val = {1e-3: lambda t: 3.0 - t / 1000, 1e-2: lambda t: 2.0 + abs(t - 300) / 1000}
    steps = _steps_for(s, lambda r, t: val[r["lr"]](t), lambda r, t: 1.0, lambda r, t: float(t) if t == 650 else 0.5)
    d = rp.run_diagnostics(s, steps).sort("lr")
    assert d["best_val"].to_list() == pytest.approx([2.0, 2.0])
    assert d["best_val_step"].to_list() == [1000, 300]
    assert d["last_val"].to_list() == pytest.approx([2.0, 2.7])
    late = [2.0 + abs(t - 300) / 1000 for t in range(600, 1001, 100)]
    assert d["late_val_mean"][1] == pytest.approx(np.mean(late))
    assert d["late_val_sd"][1] == pytest.approx(np.std(late, ddof=1))
    assert d["max_grad_norm"].to_list() == [650.0, 650.0]
    assert d["final_weight_norm"].to_list() == pytest.approx([31.0, 40.0])


def test_diagnostics_stop_at_divergence() -> None:
    s = bowl_summaries(batches=(32,), lrs=(1e-2,), seeds=1).with_columns(pl.lit(500).alias("diverged_step"))
    steps = _steps_for(s, lambda r, t: 2.0 if t <= 500 else 0.5, lambda r, t: 1.0, lambda r, t: 1e9 if t > 500 else t)
    d = rp.run_diagnostics(s, steps)
    assert d["best_val"].item() == 2.0 and d["max_grad_norm"].item() == 500.0 and d["diverged"].item()
    table, text = rp.divergence_markdown(d)
    assert "| 1 | 32 | 0.01 | 0 | 501 | 500 |" in table  # steps 1-500 finite: step 501 diverged
    assert text.startswith("Before the first non-finite step the diverged runs' gradient norm reached 500 to 500.")


DIV_WHY = "a non-finite loss or gradient norm at a recorded step, or a non-finite final val loss"


def _with_outcomes(s: pl.DataFrame, nonfinite: list[int], not_converged: list[int]) -> pl.DataFrame:
    """`s` with the runs at row indices `nonfinite` diverged (diverged_step 300, NaN final val loss,
    converged=false) and those at `not_converged` ended finite with converged=false."""
    ids = s["run_id"].to_list()
    div = pl.col("run_id").is_in([ids[i] for i in nonfinite])
    nc = pl.col("run_id").is_in([ids[i] for i in not_converged])
    return s.with_columns(
        pl.when(div).then(300).otherwise(None).cast(pl.Int64).alias("diverged_step"),
        pl.when(div).then(float("nan")).otherwise(pl.col("final_val_loss")).alias("final_val_loss"),
        (~div & ~nc).alias("converged"),
    )


def test_divergence_words_count_diverged_and_finite_not_converged_runs_apart() -> None:
    s = _with_outcomes(bowl_summaries(batches=(32, 64), lrs=LRS[:5], seeds=1), nonfinite=[4], not_converged=[7])
    assert s.height == 10
    # what the sentence claims: both kinds are +inf in the LR_opt fits, only one went non-finite
    eff = an.with_effective_loss(s)
    assert eff.filter(pl.col("diverged"))["loss"].to_list() == [float("inf")] * 2
    assert rp.divergence_words(s) == (
        f"1 of 10 runs diverged ({DIV_WHY}) and 1 more ended at a finite loss with converged = false; "
        "both count as infinite loss in the LR_opt fits."
    )
    configs = an.config_table(s)
    assert configs["n_diverged"].sum() == 2 and configs["n_nonfinite"].sum() == 1
    assert configs["n_not_converged"].sum() == 1
    table = rp.configs_markdown(configs)
    assert "| converged | seeds | diverged | not converged (finite) |" in table
    assert "| 32 | 0.0001 | 1 |" in table and table.count("| no | 1 | 1 | 0 |") == 1
    assert table.count("| no | 1 | 0 | 1 |") == 1
    s3 = _with_outcomes(bowl_summaries(batches=(32, 64), lrs=LRS[:5], seeds=1), nonfinite=[1, 4], not_converged=[7])
    assert rp.divergence_words(s3).endswith("and 1 more ended at a finite loss with converged = false; all 3 count "
                                            "as infinite loss in the LR_opt fits.")
    assert rp.divergence_words(s3).startswith("2 of 10 runs diverged (")


@pytest.mark.parametrize(
    ("nonfinite", "not_converged", "words"),
    [
        ([2, 5], [], f"2 of 10 runs diverged ({DIV_WHY}) and count as infinite loss in the LR_opt fits."),
        ([], [3], f"No run diverged ({DIV_WHY}); 1 of 10 runs ended at a finite loss with converged = false and "
                  "count as infinite loss in the LR_opt fits."),
        ([], [], "None of the 10 runs diverged or ended with converged = false."),
    ],
)
def test_divergence_words_with_one_kind_or_none(nonfinite: list[int], not_converged: list[int], words: str) -> None:
    s = _with_outcomes(bowl_summaries(batches=(32, 64), lrs=LRS[:5], seeds=1), nonfinite, not_converged)
    assert rp.divergence_words(s) == words


def test_divergence_table_marks_finite_not_converged_runs_apart_from_diverged_ones() -> None:
    s = _with_outcomes(bowl_summaries(batches=(32,), lrs=(1e-3, 1e-2), seeds=1), nonfinite=[1], not_converged=[0])
    steps = _steps_for(s, lambda r, t: 2.0, lambda r, t: 1.0, lambda r, t: 150.0 if t == 200 else 1.0)
    table, text = rp.divergence_markdown(rp.run_diagnostics(s, steps))
    lines = table.splitlines()
    assert lines[0].endswith("| final val | outcome |") and len(lines) == 4
    assert lines[2].startswith("| 1 | 32 | 0.01 | 0 | 301 | 150 |") and lines[2].endswith("| nan | diverged |")
    assert lines[3].startswith("| 1 | 32 | 0.001 | 0 | — | 150 |") and lines[3].endswith("| not converged (finite) |")
    assert text.startswith("Before the first non-finite step the diverged runs' gradient norm reached 150 to 150. "
                           "The runs that ended at a finite loss with converged = false have final val losses ")
    # the not-converged run stayed finite, so its spike is listed with the finite runs' spikes
    assert text.endswith("1 runs that stayed finite had gradient-norm spikes ≥ 100: B=32, LR=0.001, clip=1, seed 0 "
                         "(max 150).")


def test_overfitting_needs_a_rise_and_a_train_val_gap() -> None:
    s = bowl_summaries(batches=(32,), lrs=(1e-3, 3e-3, 1e-2), seeds=1)
    # 1e-3: still improving; 3e-3: val rises 0.5 above its best while train falls (overfits);
    # 1e-2: val rises 0.5 but train rises with it (instability, not overfitting)
    val = {1e-3: lambda t: 2.03 - t / 2000, 3e-3: lambda t: 1.5 + abs(t - 500) / 1000, 1e-2: lambda t: 2.0 + t / 2000}
    train = {1e-3: lambda t: 1.6, 3e-3: lambda t: 1.0 - t / 2000, 1e-2: lambda t: 2.0 + t / 2000}
    steps = _steps_for(s, lambda r, t: val[r["lr"]](t), lambda r, t: train[r["lr"]](t))
    s = s.with_columns(  # the summaries' final losses are the curves' last values
        pl.col("lr").replace_strict({1e-3: 1.53, 3e-3: 2.0, 1e-2: 2.5}).alias("final_val_loss"),
        pl.col("lr").replace_strict({1e-3: 1.6, 3e-3: 0.5, 1e-2: 2.5}).alias("final_train_loss"),
    )
    d = rp.run_diagnostics(s, steps)
    table, text = rp.overfitting_markdown(d, {32: 12.5})
    assert "| clip=1/adamw | 32 | 12.5 | 1.53 (0.001) | 1.6 | 1.5 (0.003, 500) | 0.003 | 1 of 3 |" in table
    assert text.startswith("Overfitting: 1 of 3 finite configs end with a val loss more than 0.1 nats above")
    assert "B=32, LR=0.003: final train 0.500, best val 1.500 at step 500, final val 2.000" in text
    assert "12 (B=32) epochs" in text and "data-limited regime" in text  # 1 of 3 >= a quarter
    assert "data-limited" not in rp.overfitting_markdown(d, None, has_lr_grid=False)[1]


def test_overfitting_leaves_out_configs_without_evaluations_along_training() -> None:
    # a run with no step rows (a committed summary whose steps.parquet lacks it) has no best val loss:
    # it must not be taken as the best (its null sorted first and crashed the sum with FLAT_WITHIN)
    s = bowl_summaries(batches=(32, 64), lrs=(1e-3, 3e-3), seeds=1)
    steps = _steps_for(s, lambda r, t: 2.0 - t / 4000, lambda r, t: 1.9 - t / 4000)
    lost = s.filter((pl.col("batch_size") == 32) & (pl.col("lr") == 1e-3))["run_id"].item()
    d = rp.run_diagnostics(s, steps.filter(pl.col("run_id") != lost))
    assert d.filter(pl.col("run_id") == lost)["best_val"].is_null().all()
    table, text = rp.overfitting_markdown(d, None)
    b32 = [line for line in table.splitlines() if "| 32 |" in line]
    assert len(b32) == 1 and "(0.003" in b32[0] and "1 of 1 |" not in b32[0] and "0 of 1 |" in b32[0]
    # every run without evaluations: no table, no sentence
    none = rp.run_diagnostics(s, steps.filter(pl.col("run_id") == "nothing"))
    assert rp.overfitting_markdown(none, None) == ("", "")


def test_data_budget_from_provenance() -> None:
    s = bowl_summaries(batches=(32, 64), lrs=(1e-3,), seeds=1)
    prov = {"corpus": {"train_chars": 64_000}, "run_config": {"common": {"model": {"block_size": 16}}}}
    assert rp.data_budget(prov, s) == {32: 1000 * 32 * 16 / 64_000, 64: 1000 * 64 * 16 / 64_000}
    assert rp.data_budget({}, s) is None


def test_clip_frequency_against_lr() -> None:
    s = bowl_summaries(batches=(32, 64), lrs=(1e-4, 1e-3, 1e-2), seeds=1).with_columns(
        (0.9 - 40 * pl.col("lr")).alias("avg_clip_frequency")  # falls with LR at every B
    )
    steps = _steps_for(s, lambda r, t: 2.0, lambda r, t: 1.9)
    table, text = rp.clip_vs_lr(rp.run_diagnostics(s, steps))
    assert "clip frequency falls with LR at 2 and rises with LR at 0 of 2 batch sizes (Spearman ρ per B: -1.00, -1.00)" in text
    assert "0.896 at LR=0.0001 vs 0.5 at LR=0.01" in text
    assert "| clip=1/adamw | 0.0001 | 0.896 |" in table


def test_clip_vs_lr_table_is_in_ascending_lr_on_a_ragged_grid() -> None:
    # B=64 has an extra LR below B=32's grid (as phase2_5's LR 3e-5 extension): it must come first
    s = pl.concat(
        [bowl_summaries(batches=(32,), lrs=(1e-4, 1e-3, 1e-2), seeds=1),
         bowl_summaries(batches=(64,), lrs=(3e-5, 1e-4, 1e-3, 1e-2), seeds=1)],
        how="vertical_relaxed",
    ).with_columns((0.9 - 40 * pl.col("lr")).alias("avg_clip_frequency"))
    steps = _steps_for(s, lambda r, t: 2.0, lambda r, t: 1.9)
    table, text = rp.clip_vs_lr(rp.run_diagnostics(s, steps))
    lrs = [float(line.split("|")[2]) for line in table.splitlines() if line.startswith("| clip=1/adamw |")]
    assert lrs == [3e-5, 1e-4, 1e-3, 1e-2]
    assert "at LR=3e-05 vs" in text


def test_threshold_comparison_at_one_config() -> None:
    s = pl.concat(
        [bowl_summaries(batches=(256,), lrs=(0.05,), seeds=2, clip=c, rng_seed=i) for i, c in enumerate((None, 0.1))],
        how="vertical_relaxed",
    )
    s = s.with_columns(pl.when(pl.col("gradient_clip").is_null()).then(2.7).otherwise(2.5).alias("final_val_loss"))
    steps = _steps_for(s, lambda r, t: (2.5 if r["gradient_clip"] else 2.7) + (0.01 if t % 200 else -0.01),
                       lambda r, t: 2.4)
    table, words = rp.threshold_markdown(rp.run_diagnostics(s, steps))
    assert "| 256 | 0.05 | off | 0 |" in table and "| 256 | 0.05 | 0.1 |" in table
    assert len(words) == 1
    w = words[0]
    assert w.startswith("B=256, LR=0.05: final val loss ranges from 2.500 (clip=0.1, clipping")
    assert "to 2.700 (clip=off); with clipping off both runs stayed finite (final val 2.700)" in w
    # identical seeds: no seed spread, so any difference stands out (se 0, no test possible)
    assert w.endswith("A difference of 0.200 (se 0 from the seed-to-seed spread of final val loss over 2 and 2 "
                      "seeds) is larger than its standard error of 0.")


def _two_clips(finals: dict[float | None, list[float]], late_amp: float, *, lr: float = 0.05) -> pl.DataFrame:
    """Runs at B=256 and `lr` of the clips in `finals`, seed i with final val loss finals[clip][i], and
    val evaluations alternating ±late_amp around it (the within-run late scatter)."""
    s = pl.concat(
        [bowl_summaries(batches=(256,), lrs=(lr,), seeds=len(v), clip=c, rng_seed=i)
         for i, (c, v) in enumerate(finals.items())],
        how="vertical_relaxed",
    )
    s = s.with_columns(
        pl.struct("gradient_clip", "seed")
        .map_elements(lambda r: finals[r["gradient_clip"]][r["seed"]], return_dtype=pl.Float64)
        .alias("final_val_loss")
    )
    steps = _steps_for(s, lambda r, t: r["final_val_loss"] + (late_amp if t % 200 else -late_amp), lambda r, t: 2.4)
    return rp.run_diagnostics(s, steps)


def _late_sd(amp: float) -> float:
    return float(np.std([amp if t % 200 else -amp for t in range(600, 1001, 100)], ddof=1))


def test_threshold_difference_of_seed_means_is_judged_by_the_seed_spread() -> None:
    # seed means 2.500 and 2.520 (3 seeds each, seed sd 0.002): 0.02 > 2 Welch se (0.0033), although
    # each run's late val evaluations scatter by sd ~0.022 (2 sd = 0.044 > 0.02)
    runs = _two_clips({0.1: [2.498, 2.500, 2.502], 1.0: [2.518, 2.520, 2.522]}, late_amp=0.02)
    assert 0.02 < 2 * runs["late_val_sd"].min()
    se = np.sqrt(2 * 0.002**2 / 3)
    p = stats.ttest_ind([2.498, 2.500, 2.502], [2.518, 2.520, 2.522], equal_var=False).pvalue
    _, words = rp.threshold_markdown(runs)
    assert p < 0.05
    assert words[0].endswith(
        f"A difference of 0.020 (se {se:.2g} from the seed-to-seed spread of final val loss over 3 and 3 seeds) "
        f"is significant at the 5% level (Welch's t-test p = {p:.2g})."
    )


def test_threshold_difference_within_the_seed_spread_is_not_resolved() -> None:
    # the same means, seed sd 0.05 (2 Welch se = 0.082 > 0.02), though one run's late scatter is ~0.001
    runs = _two_clips({0.1: [2.45, 2.50, 2.55], 1.0: [2.47, 2.52, 2.57]}, late_amp=0.001)
    assert 0.02 > 2 * runs["late_val_sd"].max()
    p = stats.ttest_ind([2.45, 2.50, 2.55], [2.47, 2.52, 2.57], equal_var=False).pvalue
    _, words = rp.threshold_markdown(runs)
    assert p > 0.05
    assert words[0].endswith(
        f"A difference of 0.020 (se {0.05 * np.sqrt(2 / 3):.2g} from the seed-to-seed spread of final val loss over "
        f"3 and 3 seeds) is not significant at the 5% level (Welch's t-test p = {p:.2g})."
    )


def test_threshold_two_seeds_beyond_two_standard_errors_is_not_called_significant() -> None:
    # 2 seeds each: the difference 0.15 is > 2 se (0.141) but Welch's t with 2 dof gives p ≈ 0.17
    runs = _two_clips({0.1: [2.45, 2.55], 1.0: [2.60, 2.70]}, late_amp=0.001)
    se = np.sqrt(2 * np.var([2.45, 2.55], ddof=1) / 2)
    assert 0.15 > 2 * se
    p = stats.ttest_ind([2.45, 2.55], [2.60, 2.70], equal_var=False).pvalue
    assert p > 0.05
    _, words = rp.threshold_markdown(runs)
    assert words[0].endswith(f"is not significant at the 5% level (Welch's t-test p = {p:.2g}).")


def test_threshold_one_seed_each_uses_the_combined_late_scatter_of_the_two_runs() -> None:
    # 0.025 is more than two of either run's late sd (0.011) but within two of √(sd₁² + sd₂²) = 0.0155
    runs = _two_clips({0.1: [2.500], 1.0: [2.525]}, late_amp=0.01)
    combined = np.sqrt(2) * _late_sd(0.01)
    assert 2 * _late_sd(0.01) < 0.025 < 2 * combined
    _, words = rp.threshold_markdown(runs)
    assert words[0].endswith(
        f"A difference of 0.025 is within two of the combined late-evaluation scatter of the two runs (sd "
        f"{combined:.2g} = √(sd₁² + sd₂²) of the val evaluations in each run's second half; one seed each, so no "
        "seed-to-seed spread is in it)."
    )


def test_threshold_mixed_seed_counts_and_seed_count_of_the_compared_configs() -> None:
    # clip=0.1 has 3 seeds (sd 0.002), clip=1 a single run (late sd ~0.011): se = √(0.002²/3 + sd²);
    # clip=10 (5 seeds, one diverged) is left out and its seeds are not counted
    runs = _two_clips({0.1: [2.498, 2.500, 2.502], 1.0: [2.540], 10.0: [2.6] * 5}, late_amp=0.01)
    runs = runs.with_columns(
        pl.when((pl.col("gradient_clip") == 10.0) & (pl.col("seed") == 4)).then(False).otherwise(pl.col("converged"))
        .alias("converged")
    )
    runs = runs.with_columns(an.diverged_expr().alias("diverged"))
    se = np.sqrt(0.002**2 / 3 + _late_sd(0.01) ** 2)
    assert 0.04 > 2 * se
    _, words = rp.threshold_markdown(runs)
    w = words[0]
    assert w.startswith("B=256, LR=0.05: final val loss ranges from 2.500 (clip=0.1, clipping")
    assert ("to 2.540 (clip=1); left out of the comparison for not-converged seeds: clip=10 (1 of 5 "
            "runs ended at a finite loss with converged = false).") in w
    assert w.endswith(
        f"A difference of 0.040 is larger than two standard errors of the difference (se {se:.2g}, from the "
        "seed-to-seed spread over the 3 seeds of clip=0.1 and, for the single clip=1 run, the scatter of its val "
        "evaluations in its second half, which leaves out that config's seed-to-seed spread)."
    )
    assert "5 seeds" not in w


def test_target_caveats_name_bounds_and_single_lrs() -> None:
    edge = bowl_summaries(batches=(128, 256), lrs=LRS[:5], seeds=1, noise=0.0)  # minima past the high edge
    cmp = an.compare(edge, experiment="e", prediction=as_prediction(edge), n_boot=10)
    lr = next(t for t in cmp.targets if t.name == "lr_opt")
    assert lr.passed is None and rp.target_caveat(cmp, lr) == "LR_opt at grid edge"
    clipf = next(t for t in cmp.targets if t.name == "clip_frequency")
    assert rp.target_caveat(cmp, clipf) == ""
    md = rp.comparison_markdown(cmp)
    assert "| lr_opt | LR_opt within factor 1.5 for every B | not scored: LR_opt at grid edge (B=128, 256) | not scored | LR_opt at grid edge |" in md
    assert "Not scored (LR_opt at grid edge: the measured LR_opt is only a bound): beta, lr_opt, rules." in rp.prediction_words(cmp)
    one = bowl_summaries(batches=(32, 256), lrs=(1e-3,), seeds=1)
    cmp1 = an.compare(one, experiment="o", prediction=as_prediction(one), n_boot=10)
    beta = next(t for t in cmp1.targets if t.name == "beta")
    assert rp.target_caveat(cmp1, beta) == "LR_opt at grid edge: one LR per batch size, so no measured optimum"
    partly = bowl_summaries(beta=0.7, c=5e-5, batches=(16, 32, 64, 256), lrs=LRS[:6], seeds=1, noise=0.0)
    cmp2 = an.compare(partly, experiment="p", prediction=as_prediction(partly), n_boot=10)
    t2 = {t.name: t for t in cmp2.targets}
    assert rp.target_caveat(cmp2, t2["lr_opt"]) == "" and "(B=256 left out: LR_opt at grid edge)" in t2["lr_opt"].value
    assert rp.target_caveat(cmp2, t2["beta"]) == "partly bounds: measured LR_opt on a grid edge at B=256"


def test_scores_table_marks_edge_targets_not_scored(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_runs(root, bowl_summaries(batches=(128, 256), lrs=LRS[:5], seeds=1, noise=0.0, experiment="edge"))
    pred = tmp_path / "pred"
    pred.mkdir()
    as_prediction(bowl_summaries(batches=(128, 256), lrs=LRS[:5], seeds=1, noise=0.0)).write_parquet(pred / "t.parquet")
    text = rp.write_report(["edge"], root=root, prediction=pred, out=tmp_path / "R.md", n_boot=10).read_text()
    assert "| edge | prediction | not scored (edge) | PASS | not scored (edge) | PASS | not scored (edge) |" in text
    assert "PASS (moot)" not in text


def test_partly_bounded_beta_makes_no_consistency_claim() -> None:
    m = an.measure_beta(bowl_summaries(batches=(16, 32, 256), lrs=LRS[:6], seeds=1, noise=0.0))[0]
    words = rp.beta_words(m)
    assert words.startswith("**clip=1/adamw**: ⚠ β is only bounded: 1 of the 3 batch sizes in the fit have their minimum "
                            "on a grid edge")
    assert "consistent with" not in words and "excludes" not in words


def test_report_header_provenance_calibration_preface_and_second_prediction(
    tmp_path: Path, prediction_dir: Path
) -> None:
    s = bowl_summaries(seeds=2, lrs=LRS[::2], experiment="synth")
    write_runs(tmp_path / "runs", s)
    from pyphase import results as res

    prov = {"command": ["train it"], "notes": ["a note"]}
    res.export_experiment("synth", tmp_path / "runs", tmp_path / "results", prov)
    cal = {
        "format": "pyphase.nqm", "d": 400, "h_max": 10.0, "alpha": 1.0, "sigma2": 0.1, "init_loss": 4.0,
        "loss_floor": 1.0,
        "provenance": {
            "source": "calibration", "label": "test calibration", "data": {"sha256": "0" * 64},
            "measurements": {
                "fit_step": 100,
                "points": [
                    {"step": 0, "loss": 4.0, "noise": {"grad_norm2": 20.0, "trace_sigma": 8.0, "b_simple": 0.4},
                     "eigenvalues": [100.0], "hessian_trace": 400.0},
                    {"step": 100, "loss": 2.0, "noise": {"grad_norm2": 0.2, "trace_sigma": 4.0, "b_simple": 20.0},
                     "eigenvalues": [50.0], "hessian_trace": 1200.0},
                ],
                "consistency": {"adamw_step_per_lr_measured": 60.0},
            },
        },
    }
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    out = rp.write_report(
        ["synth"], root=tmp_path / "results", prediction=prediction_dir, out=tmp_path / "R.md", n_boot=50,
        extra_predictions=[("second set", prediction_dir)], preface="## What this means\n\nWords.",
        calibration=tmp_path / "cal.json",
    )
    text = out.read_text()
    assert text.index("## What this means") < text.index("## Summary") < text.index("## Provenance")
    assert "| synth | 70 (0, 1) | 1000 | synthetic | 0 | 000000000000 |" in text
    assert "command: `train it`. Notes: a note." in text
    assert "From step 0 to step 100: |G|² falls 100x, λ_max changes 0.50x, tr H 3.00x and B_simple 50x." in text
    assert "measured 60 on the real model; the NQM's is at most √d = 20 (d = 400)" in text
    assert "#### prediction" in text and "#### second set" in text
    # the explicit calibration's MEASURED B_simple at its fit_step (20 at step 100) replaces the
    # prediction JSON's b_noise (80) in the noise-scale rule, for both prediction sets
    assert text.count("Noise-scale rule: B_noise = 20, from the measured B_simple at step 100 (fit_step) of the calibration") == 2
    assert "noise-scale (B_noise=20)" in text and "B_noise=80" not in text
    explicit = rp.write_report(
        ["synth"], root=tmp_path / "results", prediction=prediction_dir, out=tmp_path / "E.md", n_boot=20,
        calibration=tmp_path / "cal.json", b_noise=7.0,
    ).read_text()
    assert "noise-scale (B_noise=7)" in explicit and "B_noise = 7, from --b-noise (given explicitly)." in explicit
    cmp_json = json.loads(
        rp.compare_text("synth", root=tmp_path / "results", prediction=prediction_dir, calibration=tmp_path / "cal.json",
                        as_json=True, n_boot=20)
    )
    assert cmp_json["b_noise"] == 20.0 and "step 100 (fit_step)" in cmp_json["b_noise_source"]
    assert json.loads(rp.compare_text("synth", root=tmp_path / "results", prediction=prediction_dir, as_json=True,
                                      n_boot=20))["b_noise"] == 80.0
    assert "| synth | second set |" in text
    assert (tmp_path / "plots" / "synth_predicted_vs_measured_second_set.png").is_file()
    # the shipped calibration is left out when it was measured on another corpus (here: synthetic)
    plain = rp.write_report(["synth"], root=tmp_path / "results", out=tmp_path / "P.md", n_boot=20).read_text()
    assert "## Calibration" not in plain


def test_markdown_table_escapes_pipes_in_headers_and_cells() -> None:
    text = rp.markdown_table([{"|G|²": "a|b"}], ["|G|²"])
    assert text.splitlines() == ["| \\|G\\|² |", "|---|", "| a\\|b |"]


def test_prediction_specs_plain_labelled_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a=b").mkdir()  # an existing path with '=' in its name is a path, not LABEL=PATH
    assert rp.parse_prediction_specs(["p", "post sweep=q/r"]) == [("prediction", Path("p")), ("post sweep", Path("q/r"))]
    assert rp.parse_prediction_specs(["x=a=b"]) == [("x", Path("a=b"))]
    assert rp.parse_prediction_specs(["a=b"]) == [("prediction", Path("a=b"))]
    for specs, msg in [(["=p"], "expected PATH or LABEL=PATH"), (["l="], "expected PATH or LABEL=PATH"),
                       (["p", "q"], "label 'prediction' given twice"), (["x=p", "x=q"], "label 'x' given twice")]:
        with pytest.raises(PyphaseError, match=re.escape(msg)):
            rp.parse_prediction_specs(specs)


def test_report_command_is_canonical_and_quoted() -> None:
    cmd = rp.report_command(
        ["a", "b"], predictions=["p", "post sweep=q"], preface=Path("pre.md"), calibration=Path("c.json"),
        out=Path("results/REPORT.md"), results_only=True,
    )
    assert cmd == (
        "pyphase report a b --prediction p --prediction 'post sweep=q' --preface pre.md --calibration c.json "
        "--results-only --out results/REPORT.md"
    )
    assert rp.report_command(["a"], out=Path("o.md"), runs=Path("r"), results=Path("s"), b_noise=12.5) == (
        "pyphase report a --b-noise 12.5 --runs r --results s --out o.md"
    )


def test_report_from_options_quotes_its_command_and_reads_only_results(
    tmp_path: Path, prediction_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_runs(Path("results"), bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    write_runs(Path("runs"), bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth", rng_seed=9))
    Path("pre.md").write_text("## Preface\n\nHello.")
    out = rp.report_from_options(
        ["synth"], predictions=[str(prediction_dir), f"second={prediction_dir}"], preface=Path("pre.md"),
        out=Path("R.md"), results_only=True,
    )
    text = out.read_text()
    cmd = f"pyphase report synth --prediction {prediction_dir} --prediction second={prediction_dir} --preface pre.md --results-only --out R.md"
    assert "## Provenance" in text and f"`{cmd}`" in text.split("## Provenance")[1].split("\n## ")[0]
    assert "## Preface\n\nHello." in text and "#### prediction" in text and "#### second" in text
    assert "read from `results/synth`" in text  # runs/synth exists but --results-only ignores it
    assert "read from `runs/synth`" in rp.report_from_options(["synth"], out=Path("S.md")).read_text()
    with pytest.raises(PyphaseError, match="--preface nope.md: no such file"):
        rp.report_from_options(["synth"], preface=Path("nope.md"))
    with pytest.raises(PyphaseError, match="--calibration nope.json: no such file"):
        rp.report_from_options(["synth"], calibration=Path("nope.json"), out=Path("S.md"))


def test_report_from_options_with_results_alone_reads_only_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A given `results` is authoritative: runs/synth is not read, without `results_only`; the quoted
    command gives --results even when it names the default folder; with both, `runs` comes first."""
    monkeypatch.chdir(tmp_path)
    write_runs(Path("results"), bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    write_runs(Path("runs"), bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth", rng_seed=9))
    text = rp.report_from_options(["synth"], results=Path("results"), out=Path("R.md")).read_text()
    assert "read from `results/synth`" in text and "`pyphase report synth --results results --out R.md`" in text
    text = rp.report_from_options(["synth"], runs=Path("runs"), results=Path("results"), out=Path("R.md")).read_text()
    assert "read from `runs/synth`" in text and "`pyphase report synth --runs runs --results results --out R.md`" in text
    assert rp.report_command(["a"], out=Path("o.md"), results=Path("results"), results_only=True) == (
        "pyphase report a --results-only --out o.md"
    )


def test_compare_text_names_the_folder_it_read(synth_root: Path) -> None:
    md = rp.compare_text("synth", root=synth_root, n_boot=20)
    assert md.splitlines()[2] == f"Measured: read from `{synth_root}/synth` (runs layout, 70 finished runs)"
    data = json.loads(rp.compare_text("synth", root=synth_root, as_json=True, n_boot=20))
    assert (data["measured_source"], data["measured_layout"]) == (f"{synth_root}/synth", "runs")


# --------------------------------------------------------------------------- β along training
def _budget_bowl(beta_of_step, c: float = 2e-4):
    """Noise-free summaries on the quarter-decade grid and step rows whose val loss at step t is a
    parabola in log10 LR with its minimum at c·B^beta_of_step(t)."""
    s = bowl_summaries(seeds=1, noise=0.0)

    def val(r, t):
        opt = np.log10(c * r["batch_size"] ** beta_of_step(t))
        return 2.0 + 0.3 * (np.log10(r["lr"]) - opt) ** 2

    return s, _steps_for(s, val, lambda r, t: 1.0)


def test_beta_along_training_recovers_a_beta_that_changes_with_the_budget() -> None:
    s, steps = _budget_bowl(lambda t: 0.0 if t < 500 else 0.5)
    along = an.beta_along_training(s, steps, n_boot=50)
    assert [b.step for b in along] == list(range(100, 1001, 100))
    for b in along:
        expected = 0.0 if b.step < 500 else 0.5
        assert b.measurement.fit.beta == pytest.approx(expected, abs=1e-9)
        assert not b.measurement.any_at_edge
        assert b.best_loss == pytest.approx(steps.filter(pl.col("step") == b.step)["val_loss"].min())
    table, words = rp.beta_along_markdown(along)
    assert len(words) == 1
    assert "measured (every minimum inside the grid) at 10 of 10 steps" in words[0]
    assert "-0.00 [" in words[0] or "0.00 [" in words[0]
    assert "0.50 [" in words[0] and "at step 1,000" in words[0]
    assert table.count("| clip=1/adamw |") == 10


def test_beta_along_markdown_without_an_interval_says_so() -> None:
    """A step whose β has no bootstrap interval (too few usable points, as the smoke experiment on a
    real corpus gives) is reported without one instead of failing the whole report."""
    from dataclasses import replace

    s, steps = _budget_bowl(lambda t: 0.5)
    along = [replace(b, measurement=replace(b.measurement, ci_low=None, ci_high=None)) for b in an.beta_along_training(s, steps, n_boot=50)]
    table, words = rp.beta_along_markdown(along)
    assert "0.50 (no interval) at step 100" in words[0] and "0.50 (no interval) at step 1,000" in words[0]
    assert words[0].endswith("None of those steps has an interval.")
    assert table.count("| — |") == 10
    # some steps with an interval: the count says of how many
    along[0] = an.beta_along_training(s, steps, n_boot=50)[0]
    _, words = rp.beta_along_markdown(along)
    assert "0.50 (no interval) at step 1,000" in words[0] and "0.50 [" in words[0]
    assert words[0].endswith("The interval contains β = 0 at 0 of the 1 of those steps that have one.")


def test_summaries_at_step_counts_a_divergence_only_inside_the_budget() -> None:
    s, steps = _budget_bowl(lambda t: 0.5)
    victim = s["run_id"][3]
    s = s.with_columns(
        pl.when(pl.col("run_id") == victim).then(450).otherwise(None).cast(pl.Int64).alias("diverged_step"),
        (pl.col("run_id") != victim).alias("converged"),
    )
    before = an.with_effective_loss(an.summaries_at_step(s, steps, 400)).filter(pl.col("run_id") == victim)
    after = an.with_effective_loss(an.summaries_at_step(s, steps, 500)).filter(pl.col("run_id") == victim)
    assert not before["diverged"][0] and np.isfinite(before["loss"][0])
    assert after["diverged"][0] and after["loss"][0] == float("inf")
    assert before["num_steps"][0] == 400 and after["diverged_step"][0] == 450
    # its evaluations after the divergence may be missing: later steps stay common to every run
    steps = steps.filter(~((pl.col("run_id") == victim) & (pl.col("step") > 450)))
    assert an.common_eval_steps(s, steps) == list(range(100, 1001, 100))
    # a finite run missing an evaluation removes that step
    other = s["run_id"][0]
    steps = steps.filter(~((pl.col("run_id") == other) & (pl.col("step") == 700)))
    assert 700 not in an.common_eval_steps(s, steps)


def test_beta_along_markdown_with_every_minimum_on_an_edge_reports_no_beta() -> None:
    s, steps = _budget_bowl(lambda t: 0.5, c=1e-6)  # LR_opt far below the grid: low edge everywhere
    along = an.beta_along_training(s, steps, n_boot=50)
    table, words = rp.beta_along_markdown(along)
    assert "measured (every minimum inside the grid) at 0 of 10 steps." in words[0]
    first = next(line for line in table.splitlines() if line.startswith("| 100 |"))
    assert first.split("|")[3].strip() in ("", "—")  # no β, not the slope through edge values
    assert "≤0.0001" in first


def test_a_report_where_every_run_diverged_is_written_and_says_so(tmp_path: Path) -> None:
    df = bowl_summaries(seeds=1, lrs=LRS[::3], clip=None, experiment="alldiv").with_columns(
        pl.lit(float("nan")).alias("final_val_loss"), pl.lit(False).alias("converged"))
    write_runs(tmp_path / "runs", df)
    out = rp.write_report(["alldiv"], root=tmp_path / "runs", out=tmp_path / "REPORT.md", n_boot=50)
    text = out.read_text()
    assert "| alldiv | clip=off/adamw | not measured (every LR diverged or did not converge) | — |" in text
    assert "plots/alldiv_lr_opt.png" not in text  # no LR_opt to draw, and no crash drawing none


def test_summary_row_says_why_beta_is_not_measured() -> None:
    one_b = bowl_summaries(seeds=1, batches=(64,), lrs=LRS[::2])
    rows = rp.summary_rows("e", an.measure_beta(one_b), an.config_table(one_b))
    assert rows[0]["β [95% interval]"] == "not measured (fewer than two B locate an LR_opt)"
    edges = bowl_summaries(seeds=1, lrs=LRS[:3])  # every minimum above the grid: all on its high edge
    rows = rp.summary_rows("e", an.measure_beta(edges), an.config_table(edges))
    assert rows[0]["β [95% interval]"] == "not measured (every LR_opt on a grid edge)"


def test_an_experiment_named_twice_is_reported_once(synth_root: Path, tmp_path: Path) -> None:
    once = rp.write_report(["synth"], root=synth_root, out=tmp_path / "once" / "REPORT.md", n_boot=100).read_text()
    twice = rp.write_report(["synth", "synth"], root=synth_root, out=tmp_path / "twice" / "REPORT.md", n_boot=100).read_text()
    assert twice.count("\n## synth") == 1
    assert twice.split("\n", 1)[1] == once.split("\n", 1)[1]  # all but the title line
    assert scan(synth_root, ["synth", "synth"]).summaries.collect().height == scan(synth_root, "synth").summaries.collect().height


def test_an_unreadable_summary_stops_only_commands_that_read_it(synth_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "results" / "broken"
    broken.mkdir(parents=True)
    (broken / "summary.csv").write_text("")
    roots = [synth_root, tmp_path / "results"]
    assert scan(roots, "synth").summaries.collect().height > 0
    with pytest.raises(PyphaseError, match="broken/summary.csv: unreadable CSV"):
        scan(roots, "broken")
    with pytest.raises(PyphaseError, match="broken/summary.csv: unreadable CSV"):
        scan(roots)  # every experiment: the broken one among them


def test_clipping_words_flag_an_after_clip_norm_above_the_before_clip_norm() -> None:
    s = bowl_summaries(seeds=1, lrs=LRS[::4])
    ok = an.check_clip_norms(s)
    assert ok.ok and "After-clip norms are consistent" in rp.clipping_words(ok, an.config_table(s))
    bad = s.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("avg_grad_norm_before") * 0.5)
                         .otherwise(pl.col("avg_grad_norm_before")).alias("avg_grad_norm_before"))
    check = an.check_clip_norms(bad)
    assert not check.ok and check.after_above_before == 1
    assert "1 report after above before" in rp.clipping_words(check, an.config_table(bad))


def test_comparison_table_says_not_measured_for_a_beta_through_grid_edges() -> None:
    edges = bowl_summaries(seeds=1, lrs=LRS[:3])  # every minimum above the grid
    cmp = an.compare(edges, experiment="e", prediction=as_prediction(edges))
    assert "| not measured |" in rp.comparison_markdown(cmp)


def test_plateau_words_count_the_configs_below_each_milestone() -> None:
    s = bowl_summaries(seeds=1, lrs=LRS[::4])
    configs = an.config_table(s)
    lo = float(configs["loss"].min())
    ent = CorpusEntropies(lo + 0.5, lo + 0.001, 65, "test")
    words = rp.plateau_words(configs, ent)
    n_bi = int((configs["loss"] < lo + 0.001).sum())
    n_uni = int((configs["loss"] < lo + 0.5).sum())
    assert f"({n_uni} of {configs.height} finite configs below the unigram entropy, {n_bi} below the bigram)" in words
    assert "the best model left the unigram plateau" in words


def test_report_words_leave_a_one_lr_batch_size_out_of_the_fit_and_name_it() -> None:
    # B 32/64/128 on a grid with interior minima, B 256 at a single LR: β from three points, not
    # "only bounded", and B 256 named as left out
    grid = bowl_summaries(seeds=1, batches=(32, 64, 128), lrs=LRS, noise=0.0)
    one = bowl_summaries(seeds=1, batches=(256,), lrs=LRS[3:4], noise=0.0)
    df = pl.concat([grid, one], how="vertical_relaxed")
    (m,) = an.measure_beta(df, n_boot=20)
    assert m.fit is not None and m.fit.n == 3
    words = rp.beta_words(m)
    assert "only bounded" not in words and "is a bound" not in words
    assert words.endswith("Left out of the fit: B=256: one LR tested, and a single LR cannot locate an optimum.")
    row = rp.summary_rows("e", [m], an.config_table(df))[0]["β [95% interval]"]
    assert row.startswith(f"{m.fit.beta:.2f} ") and row.endswith("; B=256 not in the fit") and "bounded" not in row
    table = rp.beta_markdown([m])
    assert "| none | 256 |" in table  # no B at a grid edge; B 256 left out of the fit


def test_report_words_for_flat_loss_curves() -> None:
    flat = bowl_summaries(seeds=1, batches=(64, 128), lrs=LRS[:4], noise=0.0).with_columns(
        pl.lit(2.5).alias("final_val_loss"))
    (m,) = an.measure_beta(flat, n_boot=20)
    assert m.fit is None
    assert rp.beta_words(m).startswith("**") and "β is not measured: β needs LR_opt at two or more batch sizes" \
        in rp.beta_words(m) and "flat" in rp.beta_words(m)
    row = rp.summary_rows("e", [m], an.config_table(flat))[0]["β [95% interval]"]
    assert row == "not measured (flat loss over LR at every B)"
    assert rp._lr_opt_text(m.optima[0]) == "64: flat"


# --------------------------------------------------------------------------- --out checked first; where to regenerate
def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_out_an_existing_folder_writes_report_md_inside_it_and_leaves_other_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder holding REPORT.md and plots/ of an earlier report of A; `--out sub` (an existing
    folder) for B writes sub/REPORT.md and sub/plots/, and does not touch the earlier plots (it
    rewrote them and then failed with 'Is a directory')."""
    write_runs(tmp_path / "A", bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    write_runs(tmp_path / "B", bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth", rng_seed=9))
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    rp.report_from_options(["synth"], runs=Path("../A"), out=Path("REPORT.md"))
    before = _files(work)
    assert "plots/synth_loss_curves.png" in before
    Path("sub").mkdir()
    out = rp.report_from_options(["synth"], runs=Path("../B"), out=Path("sub"))
    assert out == Path("sub/REPORT.md")
    assert {k: v for k, v in _files(work).items() if not k.startswith("sub/")} == before
    text = out.read_text()
    assert "`pyphase report synth --runs ../B --out sub/REPORT.md`" in text  # the file, as it was written
    assert "![Loss curves](plots/synth_loss_curves.png)" in text and Path("sub/plots/synth_loss_curves.png").is_file()


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("afile/r.md", "--out afile/r.md: afile is a file, not a folder"),
        ("afile/deeper/r.md", "--out afile/deeper/r.md: afile is a file, not a folder"),
        ("plotsfile/R.md", "--out plotsfile/R.md: plotsfile/plots is a file, not the folder of the report's plots"),
        ("dir", "--out dir: dir/REPORT.md is a folder, not a file"),  # an existing folder: REPORT.md in it
    ],
)
def test_report_out_that_cannot_be_written_is_refused_before_any_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, message: str
) -> None:
    write_runs(tmp_path / "runs", bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    Path("plotsfile").mkdir()
    Path("plotsfile/plots").write_text("x")
    Path("dir/REPORT.md").mkdir(parents=True)
    with pytest.raises(PyphaseError, match=f"^{re.escape(message)}$"):
        rp.report_from_options(["synth"], out=Path(out))
    assert not list(tmp_path.rglob("*.png"))


def test_regenerate_line_says_where_the_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quoted command reads ./runs and ./results: outside the repository root the report says
    from which directory; with only absolute paths it needs none; at the repository root (the
    committed reports) it says so, and quotes the command unchanged."""
    write_runs(tmp_path / "results" / "recheck", bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    monkeypatch.chdir(tmp_path)

    def regenerate(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith("Regenerate this report"))

    out = rp.report_from_options(["synth"], results=Path("results/recheck"), results_only=True,
                                 out=Path("results/recheck/REPORT.md"))
    assert regenerate(out.read_text()) == f"Regenerate this report (plots included) from `{tmp_path.as_posix()}` with:"
    out = rp.report_from_options(["synth"], runs=tmp_path / "nowhere", results=tmp_path / "results" / "recheck",
                                 out=tmp_path / "abs.md")
    assert regenerate(out.read_text()) == "Regenerate this report (plots included) with:"
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    out = rp.report_from_options(["synth"], results=Path("results/recheck"), results_only=True,
                                 out=Path("results/recheck/REPORT.md"))
    text = out.read_text()
    assert regenerate(text) == "Regenerate this report (plots included) from the repository root with:"
    assert ("`pyphase report synth --results results/recheck --results-only --out results/recheck/REPORT.md`"
            in text)


def test_a_prediction_with_every_lr_opt_on_a_grid_edge_predicts_no_beta_in_the_comparison() -> None:
    measured = bowl_summaries(seeds=1, noise=0.0)  # interior minima on the full grid
    edge = bowl_summaries(seeds=1, lrs=LRS[:3], noise=0.0)  # every predicted minimum past the high edge
    cmp = an.compare(measured, experiment="e", prediction=as_prediction(edge), n_boot=10)
    assert all(g.predicted.all_at_edge for g in cmp.groups)
    md = rp.comparison_markdown(cmp)
    beta_row = next(line for line in md.splitlines() if line.startswith("| clip=1/adamw |") and "not predicted" in line)
    assert "| not predicted |" in beta_row
    words = rp.prediction_words(cmp)
    assert words.endswith(f"Not scored ({an.PREDICTED_EDGE_REASON}: the predicted LR_opt is only a bound): beta, lr_opt, rules.")


def test_a_fail_on_violated_predicted_bounds_reads_as_a_fail() -> None:
    measured = bowl_summaries(seeds=1, noise=0.0)  # interior minima, LR_opt 8e-4 .. 3.2e-3
    low = bowl_summaries(seeds=1, noise=0.0, c=1e-8)  # every predicted minimum below the grid: LR_opt <= 1e-4
    cmp = an.compare(measured, experiment="e", prediction=as_prediction(low), n_boot=10)
    lr = next(t for t in cmp.targets if t.name == "lr_opt")
    assert lr.passed is False
    assert rp.target_caveat(cmp, lr) == "predicted bounds: predicted LR_opt on a grid edge at B=16, 32, 64, 128, 256"
    md = rp.comparison_markdown(cmp)
    assert ("| lr_opt | LR_opt within factor 1.5 for every B | bound LR_opt ≤ 0.0001 violated at B=16, 32, 64, 128, 256 "
            "(worst x32.00) | FAIL | predicted bounds: predicted LR_opt on a grid edge at B=16, 32, 64, 128, 256 |") in md
    assert "| predicted at edge |" in md and "| low (LR_opt ≤) |" in md
    words = rp.prediction_words(cmp)
    assert words.startswith("The prediction passes 0 of 3 scored targets (fails: clip_frequency, lr_opt, regime).")
    assert words.endswith(f"Not scored ({an.PREDICTED_EDGE_REASON}: the predicted LR_opt is only a bound): beta, rules. "
                          "lr_opt is judged on predicted grid-edge bounds: the measured LR_opt lies beyond the "
                          "predicted bound by more than factor 1.5 at B=16, 32, 64, 128, 256.")


def test_a_pass_with_predicted_bounds_that_hold_names_them() -> None:
    measured = bowl_summaries(seeds=1, noise=0.0)
    pred = pl.concat([bowl_summaries(batches=(16, 32, 64, 128), seeds=1, noise=0.0),
                      bowl_summaries(batches=(256,), lrs=LRS[:7], seeds=1, noise=0.0)], how="vertical_relaxed")
    cmp = an.compare(measured, experiment="e", prediction=as_prediction(pred), n_boot=10)
    lr = next(t for t in cmp.targets if t.name == "lr_opt")
    assert lr.passed is True
    assert rp.target_caveat(cmp, lr) == "partly predicted bounds: predicted LR_opt on a grid edge at B=256"
    assert rp.prediction_words(cmp).endswith(
        "lr_opt is judged partly on predicted grid-edge bounds, which the measured LR_opt keeps within factor 1.5.")
    assert "| high (LR_opt ≥) |" in rp.comparison_markdown(cmp)


def test_threshold_best_against_worst_of_several_is_corrected_for_the_pairs() -> None:
    # 4 thresholds, 3 seeds each: best vs worst has Welch p < 0.05 but not after Bonferroni over 6 pairs
    finals = {0.1: [2.50, 2.51, 2.52], 1.0: [2.51, 2.52, 2.53], 10.0: [2.515, 2.525, 2.535], None: [2.53, 2.54, 2.55]}
    runs = _two_clips(finals, late_amp=0.001)
    p = stats.ttest_ind(finals[0.1], finals[None], equal_var=False).pvalue
    assert p < 0.05 < 6 * p
    _, words = rp.threshold_markdown(runs)
    assert words[0].endswith(f"is not significant at the 5% level (Welch's t-test p = {p:.2g}, {min(1, 6 * p):.2g} "
                             "after Bonferroni over the 6 pairs of 4 thresholds).")


def test_report_out_ending_in_a_separator_is_a_folder_to_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_runs(tmp_path / "runs", bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    monkeypatch.chdir(tmp_path)
    out = rp.report_from_options(["synth"], out="newdir/")
    assert out == Path("newdir/REPORT.md") and out.is_file() and Path("newdir/plots").is_dir()


def test_a_diverged_batch_size_beside_edge_bounds_is_named_as_left_out_not_as_an_edge() -> None:
    # B=16, 64 with minima at the low edge, B=128 with every LR diverged: β is not measured, the
    # edge notes name the fit's points only, B=128 is named as left out, the along table gives no β
    edge = bowl_summaries(beta=0.5, c=1e-8, batches=(16, 64), noise=0.0, seeds=1)
    dead = bowl_summaries(beta=0.5, batches=(128,), noise=0.0, seeds=1).with_columns(
        pl.lit(float("nan")).alias("final_val_loss"), pl.lit(False).alias("converged"))
    (m,) = an.measure_beta(pl.concat([edge, dead], how="vertical_relaxed"), n_boot=10)
    assert m.fit is not None and m.all_at_edge
    words = rp.beta_words(m)
    assert "every batch size's minimum in the fit is on a grid edge" in words
    assert "B=128: every LR diverged or did not converge" not in words.split("Left out of the fit")[0]
    assert words.endswith("Left out of the fit: B=128: every LR diverged or did not converge.")


def test_an_all_edge_beta_shows_no_interval_either() -> None:
    edges = bowl_summaries(seeds=2, lrs=LRS[:3])  # every minimum above the grid: all on its high edge
    (m,) = an.measure_beta(edges, n_boot=20)
    assert m.fit is not None and m.all_at_edge
    assert rp._interval_text(m) == "—"


def test_the_beta_caveat_names_edges_of_the_scored_groups_only() -> None:
    # clip=1 measured on the whole grid (interior, scored); clip=off only on the grid's low end, every
    # minimum on its high edge (not scored): the β caveat must not name clip=off's edges
    scored = bowl_summaries(seeds=1, noise=0.0, clip=1.0)
    edge = bowl_summaries(seeds=1, noise=0.0, clip=None, lrs=LRS[:3])
    measured = pl.concat([scored, edge], how="vertical_relaxed")
    pred = as_prediction(pl.concat([scored, bowl_summaries(seeds=1, noise=0.0, clip=None)], how="vertical_relaxed"))
    cmp = an.compare(measured, experiment="e", prediction=pred, n_boot=10)
    beta = next(t for t in cmp.targets if t.name == "beta")
    assert beta.passed is not None
    assert rp.target_caveat(cmp, beta) == ""


# --------------------------------------------------------------------------- all or nothing
def _two_experiments(tmp_path: Path, prediction_dir: Path) -> tuple[Path, Path]:
    """Runs of two experiments (synth, other) and a prediction folder with one subfolder each."""
    runs = tmp_path / "runs"
    write_runs(runs, bowl_summaries(seeds=1, lrs=LRS[::2], experiment="synth"))
    write_runs(runs, bowl_summaries(seeds=1, lrs=LRS[::2], experiment="other", rng_seed=5))
    pred = tmp_path / "pred"
    for e in ("synth", "other"):
        (pred / e).mkdir(parents=True)
        for f in prediction_dir.iterdir():
            (pred / e / f.name).write_bytes(f.read_bytes())
    return runs, pred


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temporary folder, here one this test can see empty again."""
    import tempfile

    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_a_report_that_fails_on_a_later_input_leaves_the_earlier_report_as_it_was(
    tmp_path: Path, prediction_dir: Path, private_tmp: Path
) -> None:
    """A bad --calibration (read, with --b-noise given, only after the plots were drawn) and a
    corrupt prediction of the second experiment each stop the report with a one-line error and leave
    the earlier REPORT.md and every plot byte for byte, with no temporaries (they rewrote the plots,
    and drew a new predicted-vs-measured one, before they failed)."""
    runs, pred = _two_experiments(tmp_path, prediction_dir)
    rep = tmp_path / "rep"
    rp.write_report(["synth", "other"], root=runs, out=rep / "REPORT.md", n_boot=50)
    before = _files(rep)
    assert "plots/synth_lr_opt.png" in before and "plots/other_lr_opt.png" in before
    (tmp_path / "t.sh").write_text("x\n")
    with pytest.raises(PyphaseError, match=r"t\.sh: invalid JSON"):
        rp.write_report(["synth", "other"], root=runs, prediction=pred, out=rep / "REPORT.md", n_boot=50,
                        b_noise=5.0, calibration=tmp_path / "t.sh")
    assert _files(rep) == before
    (pred / "other" / "trajectories.parquet").write_text("junk")
    with pytest.raises(PyphaseError, match=r"other/trajectories\.parquet"):
        rp.write_report(["synth", "other"], root=runs, prediction=pred, out=rep / "REPORT.md", n_boot=50)
    assert _files(rep) == before
    assert not list(private_tmp.iterdir())


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_report_stopped_while_drawing_leaves_the_earlier_report_and_no_new_folder(
    tmp_path: Path, prediction_dir: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    """Ctrl-C (or a failure) while the second experiment's plots are drawn: the earlier REPORT.md and
    plots stay byte for byte (the first experiment's plots were rewritten already), the temporaries
    are removed, and a report into a new folder leaves no folder behind."""
    runs, pred = _two_experiments(tmp_path, prediction_dir)
    rep = tmp_path / "rep"
    rp.write_report(["synth", "other"], root=runs, out=rep / "REPORT.md", n_boot=50)
    before = _files(rep)
    draw = rp.plots.plot_loss_curves

    def stop_at_other(steps, summaries, path, **kw):
        if Path(path).name.startswith("other_"):
            raise error("stopped")
        return draw(steps, summaries, path, **kw)

    monkeypatch.setattr(rp.plots, "plot_loss_curves", stop_at_other)
    with pytest.raises(error):
        rp.write_report(["synth", "other"], root=runs, prediction=pred, out=rep / "REPORT.md", n_boot=50)
    assert _files(rep) == before
    with pytest.raises(error):
        rp.write_report(["synth", "other"], root=runs, prediction=pred, out=tmp_path / "new" / "deeper" / "R.md",
                        n_boot=50)
    assert not (tmp_path / "new").exists()
    assert not list(private_tmp.iterdir())


def test_a_report_over_an_earlier_one_replaces_its_files_and_keeps_plots_it_no_longer_draws(
    tmp_path: Path, prediction_dir: Path, private_tmp: Path
) -> None:
    """A successful report over an earlier one: REPORT.md and every plot it links are the new ones,
    no temporary is left (one that a killed report left, of a process that no longer exists, is
    removed), and a plot only the earlier report drew stays (a report cannot tell its own plots from
    those of another report sharing the folder)."""
    from pyphase import results as res

    runs, pred = _two_experiments(tmp_path, prediction_dir)
    rep = tmp_path / "rep"
    rp.write_report(["synth"], root=runs, prediction=pred, extra_predictions=[("second", pred)],
                    out=rep / "REPORT.md", n_boot=50)
    earlier = _files(rep)
    assert "plots/synth_predicted_vs_measured_second.png" in earlier
    dead = 4194305  # above Linux's largest pid_max: no process has it
    stale = rep / "plots" / f".synth_lr_opt.png.tmp.{res._staged_host()}.{dead}"
    stale.write_bytes(b"left by a killed report")
    out = rp.write_report(["synth"], root=runs, out=rep / "REPORT.md", n_boot=50)
    text = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and "plots/synth_predicted_vs_measured_second.png" not in links
    now = _files(rep)
    assert all(link in now for link in links) and now["plots/synth_lr_opt.png"] != earlier["plots/synth_lr_opt.png"]
    assert now["REPORT.md"] != earlier["REPORT.md"]
    assert now["plots/synth_predicted_vs_measured_second.png"] == earlier["plots/synth_predicted_vs_measured_second.png"]
    assert set(now) == {"REPORT.md", *links, *(k for k in earlier if k.startswith("plots/"))}
    assert not list(private_tmp.iterdir())


def test_a_report_that_cannot_be_written_says_the_earlier_one_is_unchanged(
    synth_root: Path, tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = tmp_path / "rep"
    rp.write_report(["synth"], root=synth_root, out=rep / "REPORT.md", n_boot=50)
    before = _files(rep)

    def full(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rp, "_fsync", full)
    message = (f"cannot write the report {rep / 'REPORT.md'} ([Errno 28] No space left on device); "
               "an earlier report there is unchanged")
    with pytest.raises(PyphaseError, match=f"^{re.escape(message)}$"):
        rp.write_report(["synth"], root=synth_root, out=rep / "REPORT.md", n_boot=20)  # another report
    assert _files(rep) == before
    assert not list(private_tmp.iterdir())
