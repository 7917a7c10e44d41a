"""`pyphase` command line: each command parses its options, calls one library function and prints
the result (a table for people, `--json` for machines). Errors in the user's input become one line
on stderr and exit code 2; nothing here computes anything itself."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from pyphase.console import INTERRUPTED  # 130: the exit code of a run stopped by Ctrl-C
from pyphase.console import interrupted as _interrupted  # its one line and that exit
from pyphase.errors import PyphaseError, first_line

app = typer.Typer(
    help="Predict (simulator) and measure (CUDA sweeps) how the optimal LR scales with batch size, "
    "and where gradient clipping changes the regime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Corpora: statistics and downloads.", no_args_is_help=True)
results_app = typer.Typer(help="Query finished runs (polars).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(results_app, name="results")


def _show_version(value: bool) -> None:
    if value:
        from pyphase import __version__

        typer.echo(f"pyphase {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print pyphase's version and exit."),
) -> None:
    """Predict (simulator) and measure (CUDA sweeps) how the optimal LR scales with batch size, and
    where gradient clipping changes the regime."""


def _print_json(obj: Any) -> None:
    """Strict JSON (NaN and infinities as null, as `results --format json` writes them)."""
    from pyphase.results import json_safe

    typer.echo(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False))


# --------------------------------------------------------------------------- data (foundation)
@data_app.command("stats")
def data_stats(
    path: Path = typer.Argument(..., help="A UTF-8 text file, or a WikiText-2 folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Bytes, characters, vocabulary size, n-gram entropies and encode speed of a corpus."""
    from pyphase.data import corpus_stats

    stats = corpus_stats(path)
    if as_json:
        _print_json(stats)
        return
    rows = [
        ("path", stats["path"]),
        ("sha256", stats["sha256"]),
        ("bytes", f"{stats['bytes']:,}"),
        ("chars", f"{stats['chars']:,}"),
        ("vocab size", f"{stats['vocab_size']:,}"),
        ("unigram entropy", f"{stats['unigram_entropy']:.4f} nats/char"),
        ("bigram entropy", f"{stats['bigram_entropy']:.4f} nats/char"),
        ("trigram entropy", f"{stats['trigram_entropy']:.4f} nats/char"),
        ("encode speed", f"{stats['encode_mb_per_s']:,.0f} MB/s ({stats['encode_tokens_per_s'] / 1e6:,.0f} M tokens/s)"),
    ]
    for key, value in rows:
        typer.echo(f"{key:<16} {value}")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="Corpus name: wikitext-2 (raw) or wikitext-2-tokenized."),
    dest: Path = typer.Option(Path("data"), "--dest", help="Folder to download and unpack into."),
    url: Optional[str] = typer.Option(None, "--url", help="Mirror URL of the same archive (checksum still verified)."),
) -> None:
    """Download a known corpus and verify its sha256 before unpacking."""
    from pyphase.data import fetch

    folder = fetch(name, dest, url)
    typer.echo(f"{name}: verified and unpacked to {folder}")


# --------------------------------------------------------------------------- predict (simulator)
@app.command()
def predict(
    clip: Optional[list[str]] = typer.Option(
        None, "--clip", help="Clip threshold (repeat for several); 'none' for clipping off. Default: 1.0."
    ),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd."),
    batch: str = typer.Option("32,64,128,256", "--batch", help="Comma-separated batch sizes."),
    lr: Optional[str] = typer.Option(
        None, "--lr", help="start:stop:count (log-spaced) or a comma list. Default: 1e-4:1e-1:13, widened a decade "
        "at a time (up to 3) while some batch size's LR_opt sits on its edge, then refined twice around the optima."
    ),
    steps: int = typer.Option(5000, "--steps", help="Optimizer steps per trajectory."),
    seeds: int = typer.Option(8, "--seeds", help="Seeds per config."),
    momentum: Optional[float] = typer.Option(
        None, "--momentum", help="SGD momentum, in [0, 1) (sgd only). Default: the trainer's, 0.9."
    ),
    weight_decay: Optional[float] = typer.Option(
        None, "--weight-decay", help="Weight decay, >= 0 (decoupled for adamw, coupled for sgd). Default: the "
        "trainer's, 0.01."
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="NQM calibration file (default: the shipped one, else built-in values)."
    ),
    out: str = typer.Option("predictions", "--out", help="Folder for Parquet tables, JSON summary and PNG maps."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary JSON instead of tables."),
) -> None:
    """Simulate clipped SGD/AdamW on a calibrated noisy quadratic model and predict LR_opt, β, clip frequency and regimes."""
    from pyphase.predict import format_summary, run_predict
    from pyphase.results import to_json

    pred = run_predict(clip, optimizer, batch, lr, steps, seeds, calibration, out, progress=not as_json,
                       momentum=momentum, weight_decay=weight_decay)
    typer.echo(to_json(pred.summary) if as_json else format_summary(pred.summary))


# --------------------------------------------------------------------------- train (trainer)
@app.command()
def train(
    experiment: str = typer.Argument(..., help="Experiment name (experiments/<name>.toml) or a TOML path."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto (cuda when available)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Corpus file or WikiText-2 folder; default: $PYPHASE_DATA, else the embedded synthetic corpus."),
    out: Path = typer.Option(Path("runs"), "--out", help="Results folder; runs go to OUT/EXPERIMENT/RUN_ID/."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Run seeds 0..N-1 of every config instead of the file's seeds."),
    max_pack: Optional[int] = typer.Option(None, "--max-pack", help="At most K configs per packed model (1: no packing)."),
    packs_together: Optional[int] = typer.Option(
        None, "--packs-together",
        help="At most N packs with the same number of steps train side by side, on CUDA in one CUDA graph (default: 4 on CUDA, 1 on the CPU; 1: one at a time)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary rows as JSON instead of a table."),
) -> None:
    """Run every config of an experiment (resumable) and write per-run summaries and step metrics.

    Under `torchrun --nproc-per-node N -m pyphase train EXP` each process takes its share of the configs."""
    from pyphase.schema import SEED_SUMMARY_COLUMNS
    from pyphase.sweep import run_experiment

    result = run_experiment(experiment, device=device, data=data, out=out, seeds=seeds, max_pack=max_pack,
                            progress=progress, packs_together=packs_together)
    if result.shard.rank != 0 and result.coordinated:
        return  # rank 0 reports the whole experiment after the final barrier
    if as_json:
        _print_json(result.summary.to_dicts())
        return
    import polars as pl

    table = result.summary.select(["run_id", "seed", *SEED_SUMMARY_COLUMNS])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        typer.echo(table)
    shard = result.shard
    if shard.world == 1:
        typer.echo(f"{result.experiment.name}: {len(result.trained)} runs trained, {len(result.skipped)} already "
                   f"finished, on {result.device}; results in {result.out_dir}")
    else:  # this process's counts are its shard's; the table holds every run finished so far
        typer.echo(f"{result.experiment.name}: {result.summary.height} of {len(result.experiment.configs)} runs "
                   f"finished; rank {shard.rank} of {shard.world} trained {len(result.trained)} and found "
                   f"{len(result.skipped)} finished, on {result.device}; results in {result.out_dir}")


# --------------------------------------------------------------------------- calibrate
@app.command()
def calibrate(
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto (cuda when available)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Corpus file or WikiText folder; default: $PYPHASE_DATA, else the synthetic corpus."),
    out: Optional[Path] = typer.Option(Path("calibration.json"), "--out", help="Calibration file to write."),
    shape: str = typer.Option("default", "--shape", help="Model shape: default (the sweeps') or tiny (quick CPU runs)."),
    batch: str = typer.Option("32,256", "--batch", help="Batch sizes of the two-batch noise estimator (each divides the largest)."),
    steps_along: str = typer.Option("0,200,1000", "--steps-along", help="Steps of the short AdamW run to measure at (0 = initialisation)."),
    lr: float = typer.Option(3e-3, "--lr", help="Learning rate of the short AdamW run."),
    run_batch: Optional[int] = typer.Option(None, "--run-batch", help="Batch size of the short run (default: the smallest --batch)."),
    repeats: int = typer.Option(8, "--repeats", help="Independent repeats of the noise measurement (its error bar)."),
    lanczos: int = typer.Option(24, "--lanczos", help="Lanczos steps (HVPs) per point."),
    probes: int = typer.Option(16, "--probes", help="Hutchinson probes (HVPs) per point."),
    hvp_batch: int = typer.Option(32, "--hvp-batch", help="Windows in the fixed batch whose Hessian is measured."),
    top_k: int = typer.Option(8, "--top-k", help="Top eigenvalues reported and used in the spectrum fit."),
    floor: str = typer.Option("ngram3", "--floor", help="Loss floor: ngram1..ngram4 (train-split n-gram entropy) or fit (power law on the short run)."),
    fit_step: Optional[int] = typer.Option(None, "--fit-step", help="Point whose curvature and noise the NQM takes (default: the last)."),
    max_d: int = typer.Option(1 << 20, "--max-d", help="Most NQM directions the fit may use (the simulator's cost grows with d)."),
    seed: int = typer.Option(0, "--seed", help="Model initialisation and data streams."),
    radial_base: Optional[Path] = typer.Option(
        None, "--radial-base", help="Only measure the scale-invariant weights (radial part) at initialisation and "
        "write this calibration file plus the radial fields to --out (uses --device, --data, --batch, --repeats, "
        "--lr, --run-batch; shape and seed come from the file)."
    ),
    radial_steps: int = typer.Option(200, "--radial-steps", help="AdamW steps of each of the radial measurement's runs."),
    radial_lrs: str = typer.Option(
        "0.001,0.003,0.01", "--radial-lrs", help="Learning rates of the short AdamW runs whose |w_si|^2 growth is "
        "fitted as coef*lr^power (the growth law, format version 3); 'none' writes version 2 without a law."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the calibration as JSON instead of a table."),
) -> None:
    """Measure gradient noise, curvature and loss scale of the real model and fit the simulator to them."""
    from pyphase.calibrate import calibrate as run_calibration
    from pyphase.calibrate import format_table, parse_int_list

    if radial_base is not None:
        from pyphase.calibrate import (
            add_scale_invariance,
            format_scale_invariance,
            parse_float_list,
        )

        params, si = add_scale_invariance(
            radial_base, device=device, data=data, out=out, batch_sizes=parse_int_list(batch, "--batch"),
            repeats=repeats, steps=radial_steps, lr=lr, run_batch=run_batch, progress=progress,
            growth_lrs=[] if radial_lrs.strip().lower() == "none" else parse_float_list(radial_lrs, "--radial-lrs"),
        )
        if as_json:
            _print_json(params.to_dict())
            return
        typer.echo(format_scale_invariance(params, si) + (f"\nCalibration written to {out}" if out else ""))
        return
    cal = run_calibration(
        device=device, data=data, out=out, shape=shape, batch_sizes=parse_int_list(batch, "--batch"),
        steps_along=parse_int_list(steps_along, "--steps-along"), lr=lr, run_batch=run_batch, repeats=repeats,
        lanczos_iter=lanczos, probes=probes, hvp_batch=hvp_batch, top_k=top_k, floor=floor, fit_step=fit_step,
        max_d=max_d, seed=seed, progress=progress,
    )
    if as_json:
        _print_json(cal.to_dict())
        return
    typer.echo(format_table(cal))


# --------------------------------------------------------------------------- results / compare / report
_RUNS_OPT = typer.Option(
    None, "--runs", show_default=False, help="Folder of run outputs (<runs>/<experiment>/<run_id>/). Folders read: "
    "the ones given with --runs and --results, and only those (a default is not read when either is given); with "
    "neither, runs/ then results/. An experiment in both folders is read from the first: --runs (runs/).")
_RESULTS_OPT = typer.Option(
    None, "--results", show_default=False, help="Folder of committed results (<results>/<experiment>/summary.csv). "
    "Given without --runs, it is the only folder read (runs/ is not); see --runs.")
_FORMAT_OPT = typer.Option("table", "--format", help="Output: table, csv or json.")


@results_app.command("list")
def results_list(
    runs: Optional[Path] = _RUNS_OPT, results: Optional[Path] = _RESULTS_OPT, fmt: str = _FORMAT_OPT
) -> None:
    """List experiments and runs found."""
    from pyphase.results import list_text, roots_from_options

    typer.echo(list_text(roots_from_options(runs, results), fmt))


@results_app.command("show")
def results_show(
    experiment: str = typer.Argument(..., help="Experiment name (a folder under --runs or --results)."),
    runs: Optional[Path] = _RUNS_OPT,
    results: Optional[Path] = _RESULTS_OPT,
    fmt: str = _FORMAT_OPT,
) -> None:
    """Show the summary table of one experiment, after a line naming the folder it was read from
    (on stderr for csv and json)."""
    from pyphase.results import roots_from_options, show_text

    typer.echo(show_text(roots_from_options(runs, results), experiment, fmt))


@results_app.command("query")
def results_query(
    sql: str = typer.Argument(..., help='SQL query over the tables "summaries" and "steps", e.g. "SELECT lr, final_val_loss FROM summaries" '
                     '(statements that are not queries, e.g. DROP, are refused).'),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Only this experiment's runs (default: all)."),
    runs: Optional[Path] = _RUNS_OPT,
    results: Optional[Path] = _RESULTS_OPT,
    fmt: str = _FORMAT_OPT,
) -> None:
    """Run SQL over summaries and step metrics (polars SQLContext)."""
    from pyphase.results import query_text, roots_from_options

    typer.echo(query_text(roots_from_options(runs, results), sql, fmt, experiment))


@results_app.command("export")
def results_export(
    experiment: str = typer.Argument(..., help="Experiment whose finished run folders are exported."),
    runs: Path = typer.Option(
        Path("runs"), "--runs", help="Folder of the run outputs to export (<runs>/<experiment>/<run_id>/)."
    ),
    dest: Path = typer.Option(
        Path("results"), "--dest", help="Writes DEST/EXPERIMENT/{summary.csv,steps.parquet,provenance.json}, all three "
        "renamed onto an earlier export's one after the other, after every check and write (a failed check or write "
        "leaves it as it was)."),
    command: Optional[list[str]] = typer.Option(
        None, "--command", help="Command that produced the runs (repeat for several). Default: keep the earlier "
        "export's, unless its seeds or number of runs differ from these runs' (that command did not make them): then "
        "a warning on stderr, and provenance.json records command null."),
    note: Optional[list[str]] = typer.Option(None, "--note", help="Note for provenance.json (repeat for several; default: keep the earlier export's)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus file the runs trained on: checked against their sha256, adds its split sizes."),
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished", help="Export although some runs or packs are unfinished."),
    as_json: bool = typer.Option(False, "--json", help="Print the provenance JSON."),
) -> None:
    """Write an experiment's runs as committed results: summary.csv, steps.parquet, provenance.json."""
    from pyphase.results import PROVENANCE_FILE, export_experiment, read_provenance, to_json

    given = ({"command": command} if command else {}) | ({"notes": note} if note else {})
    out = export_experiment(experiment, runs, dest, given, corpus=corpus, allow_unfinished=allow_unfinished)
    prov = read_provenance(out)
    if as_json:
        typer.echo(to_json(prov))
        return
    typer.echo(f"{experiment}: {prov['runs']['finished']} runs, seeds {prov['seeds']}, steps: "
               f"{prov['files']['steps']['sampling']} -> {out}/ ({PROVENANCE_FILE} has the provenance)")


_PREDICTION_OPT = typer.Option(
    None, "--prediction", help="`pyphase predict --out` folder or its trajectory Parquet; a folder with one subfolder per experiment also works."
)
_B_NOISE_OPT = typer.Option(None, "--b-noise", help="Gradient noise scale for the noise-scale rule (default: the prediction JSON's b_noise).")


@app.command()
def compare(
    experiment: str = typer.Argument(..., help="Measured experiment name."),
    prediction: Optional[Path] = _PREDICTION_OPT,
    b_noise: Optional[float] = _B_NOISE_OPT,
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Calibration JSON whose MEASURED B_simple (at its fit_step) is the noise-scale "
        "rule's B_noise (--b-noise wins; without either, the prediction JSON's b_simple)."
    ),
    runs: Optional[Path] = _RUNS_OPT,
    results: Optional[Path] = _RESULTS_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of Markdown tables."),
) -> None:
    """Predicted against measured: β, LR_opt per batch size, clip frequency, regimes, baseline rules;
    it names the folder the measurements were read from."""
    from pyphase.report import compare_text
    from pyphase.results import roots_from_options

    typer.echo(
        compare_text(
            experiment, root=roots_from_options(runs, results), prediction=prediction, b_noise=b_noise,
            calibration=calibration, as_json=as_json,
        )
    )


@app.command()
def report(
    experiments: list[str] = typer.Argument(..., help="One or more experiment names, reported in this order."),
    prediction: list[str] = typer.Option(
        [], "--prediction", help="Prediction folder (from `pyphase predict`; <path>/<experiment>/ when present). "
        "PATH is labelled 'prediction'; LABEL=PATH names the set. Repeat to score several sets."
    ),
    preface: Optional[Path] = typer.Option(None, "--preface", help="Markdown file placed first, under the title."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Calibration JSON reported in the Calibration section; its MEASURED B_simple "
        "(at its fit_step) is the noise-scale rule's B_noise unless --b-noise is given."
    ),
    b_noise: Optional[float] = _B_NOISE_OPT,
    out: Optional[str] = typer.Option(  # a str: a trailing "/" (a folder to make) survives
        None, "--out", help="Report file, plots beside it in plots/ (default results/<exp>/REPORT.md, or "
        "results/REPORT.md for several). An existing folder, or a path ending in /, gets REPORT.md inside it."),
    corpus: Optional[Path] = typer.Option(
        None, "--corpus", help="Corpus the runs trained on, for the entropy lines (default: what the results recorded)."
    ),
    runs: Optional[Path] = _RUNS_OPT,
    results: Optional[Path] = _RESULTS_OPT,
    results_only: bool = typer.Option(
        False, "--results-only", help="Read only --results (default results/: committed results), never local runs "
        "under --runs or runs/."
    ),
) -> None:
    """Write a Markdown report with tables, plots and the answer in words (it quotes this command)."""
    from pyphase.report import report_from_options

    path = report_from_options(
        experiments, predictions=prediction, preface=preface, calibration=calibration, b_noise=b_noise,
        corpus=corpus, out=out, runs=runs, results=results, results_only=results_only,
    )
    typer.echo(f"wrote {path}")


# --------------------------------------------------------------------------- entry point
def _exit_without_teardown() -> None:
    """End a successful run that used CUDA at once, with `os._exit(0)` after flushing stdout and
    stderr: Python's finalisation and CUDA's teardown (the context, its memory pools and graphs)
    otherwise took 0.79-0.88 s after the last line of a phase3a on the H100, 0.16-0.19 s with this
    (results/bench/timeline_cold_h100_cd054c7.txt, setup_exit_ab_h100_22db3a0.txt, phase3a cut to
    300 steps on one machine), and every result is on disk by then (written
    and closed atomically, the process group destroyed, the compile workers and checkpoint writer
    stopped). PYPHASE_FAST_EXIT=0 keeps the normal exit."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized() or os.environ.get("PYPHASE_FAST_EXIT", "1") == "0":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(fast_exit: bool = False) -> None:
    """Run the app; user errors become one line on stderr and exit 2; Ctrl-C one line and exit 130
    (`_interrupted`). With `fast_exit` (the console script and `python -m pyphase`, not callers in a
    process that goes on, like tests), a successful run that used CUDA ends without the
    interpreter's teardown (`_exit_without_teardown`)."""
    try:
        # not standalone: click's usage errors come back here instead of as a boxed message
        rc = app(standalone_mode=False, prog_name="pyphase")
        if rc == INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130), silently
            _interrupted()
        sys.exit(rc if isinstance(rc, int) and not isinstance(rc, bool) else 0)  # --help, typer.Exit: their code
    except SystemExit as e:
        if fast_exit and e.code in (None, 0):
            _exit_without_teardown()
        raise
    except PyphaseError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError,
            UnicodeDecodeError) as e:
        # ValueError is what the Rust core raises for bad input; its message names the problem.
        typer.echo(f"error: {first_line(e)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:  # a typer that lets it through, or a second Ctrl-C during the first's handling
        _interrupted()
    except Exception as e:
        # an allocation failure the command did not word itself (train and calibrate name what they
        # were building): one line saying how much was asked for; any other error as before
        from pyphase.sweep import allocation_failure

        asked = allocation_failure(e)
        if asked is not None:
            typer.echo(f"error: out of memory: {asked} failed", err=True)
            sys.exit(2)
        _usage_error_or_raise(e)


def _usage_error_or_raise(e: Exception) -> NoReturn:
    """click's exceptions, as typer (which may bring its own copy of click) raises them outside
    standalone mode: a usage error (unknown option or command, missing argument or value) is one
    line and exit 2, naming the command's help, and click's other errors one line with their own
    code; a command group called without a command shows its help (exit 2, as before); Ctrl-C
    (click's Abort) is `_interrupted`; anything else is re-raised."""
    kind = type(e).__name__
    if kind == "NoArgsIsHelpError":
        text = e.format_message()  # type: ignore[attr-defined]  # typer's rich help printed it already: ""
        if text.strip():
            typer.echo(text)
        sys.exit(2)
    if kind == "Abort":  # click's word for Ctrl-C (older typers pass it on as click does)
        _interrupted()
    code = getattr(e, "exit_code", None)
    if hasattr(e, "format_message") and isinstance(code, int):  # click's ClickException and its kinds
        ctx = getattr(e, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None and code == 2 else ""
        msg = " ".join(e.format_message().split())  # type: ignore[attr-defined]
        typer.echo(f"error: {msg}{where}", err=True)
        sys.exit(code)
    raise e


def console() -> None:
    """The CLI as the `pyphase` console script and `python -m pyphase` run it (through
    `pyphase.console`): `main` with its fast exit."""
    main(fast_exit=True)


if __name__ == "__main__":
    console()
