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
    assert len(links) == 5
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
        "After-clip norms look mismeasured: 10 runs report a mean after-clip norm above the threshold "
        "and 10 report after = before" in text
    )
    assert "Of 10 clipped configs, 10 are saturated" in text
    assert "The best mean final validation loss is 3.321" in text and "still on the unigram plateau" in text
    assert "1 of 10 runs diverged" in text


def test_edge_warning_in_words() -> None:
    m = an.measure_beta(bowl_summaries(batches=(16, 32, 256), lrs=LRS[:6], seeds=1, noise=0.0))[0]
    words = rp.beta_words(m)
    assert "⚠ B=256: minimum at the high edge of the grid: LR_opt >= 0.001778" in words
    assert "β is a bound, not a measurement" in words


def test_all_edges_means_beta_not_measured() -> None:
    df = bowl_summaries(batches=(128, 256), lrs=LRS[:5], seeds=1, noise=0.0)
    words = rp.beta_words(an.measure_beta(df)[0])
    assert words.startswith("**clip=1/adamw**: ⚠ β is not measured: every batch size's minimum is on a grid edge")
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
        (2.0, "use more than one character of context"),
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
