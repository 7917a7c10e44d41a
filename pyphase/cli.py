"""`pyphase` command line: each command parses its options, calls one library function and prints
the result (a table for people, `--json` for machines). Errors in the user's input become one line
on stderr and exit code 2; nothing here computes anything itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from pyphase.errors import PyphaseError

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


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# --------------------------------------------------------------------------- data (foundation)
@data_app.command("stats")
def data_stats(
    path: Path = typer.Argument(..., help="A UTF-8 text file, or a WikiText-2 folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Bytes, characters, vocabulary size, n-gram entropies and encode speed of a corpus."""
    raise PyphaseError("`pyphase data stats` is not implemented yet")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="Corpus name: wikitext-2 (raw) or wikitext-2-tokenized."),
    dest: Path = typer.Option(Path("data"), "--dest", help="Folder to download and unpack into."),
    url: Optional[str] = typer.Option(None, "--url", help="Mirror URL of the same archive (checksum still verified)."),
) -> None:
    """Download a known corpus and verify its sha256 before unpacking."""
    raise PyphaseError("`pyphase data fetch` is not implemented yet")


# --------------------------------------------------------------------------- predict (simulator)
@app.command()
def predict() -> None:
    """Simulate clipped SGD/AdamW on a calibrated noisy quadratic model and predict LR_opt, β, clip frequency and regimes."""
    raise PyphaseError("`pyphase predict` is not implemented yet")


# --------------------------------------------------------------------------- train (trainer)
@app.command()
def train(
    experiment: str = typer.Argument(..., help="Experiment name (experiments/<name>.toml) or a TOML path."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto (cuda when available)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Corpus file; default: the embedded synthetic corpus."),
    out: Path = typer.Option(Path("runs"), "--out", help="Results folder; runs go to OUT/EXPERIMENT/RUN_ID/."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Run seeds 0..N-1 of every config instead of the file's seeds."),
    max_pack: Optional[int] = typer.Option(None, "--max-pack", help="At most K configs per packed model (1: no packing)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary rows as JSON instead of a table."),
) -> None:
    """Run every config of an experiment (resumable) and write per-run summaries and step metrics.

    Under `torchrun --nproc-per-node N -m pyphase train EXP` each process takes its share of the configs."""
    from pyphase.schema import SEED_SUMMARY_COLUMNS
    from pyphase.sweep import run_experiment

    result = run_experiment(experiment, device=device, data=data, out=out, seeds=seeds, max_pack=max_pack,
                            progress=progress)
    if result.shard.rank != 0:
        return  # rank 0 reports the whole experiment after the final barrier
    if as_json:
        _print_json(result.summary.to_dicts())
        return
    import polars as pl

    table = result.summary.select(["run_id", "seed", *SEED_SUMMARY_COLUMNS])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, float_precision=4):
        typer.echo(table)
    typer.echo(f"{result.experiment.name}: {len(result.trained)} runs trained, {len(result.skipped)} already "
               f"finished, on {result.device}; results in {result.out_dir}")


# --------------------------------------------------------------------------- calibrate
@app.command()
def calibrate() -> None:
    """Measure gradient noise, curvature and loss scale of the real model and fit the simulator to them."""
    raise PyphaseError("`pyphase calibrate` is not implemented yet")


# --------------------------------------------------------------------------- results / compare / report
@results_app.command("list")
def results_list() -> None:
    """List experiments and runs found."""
    raise PyphaseError("`pyphase results list` is not implemented yet")


@results_app.command("show")
def results_show() -> None:
    """Show the summary table of one experiment."""
    raise PyphaseError("`pyphase results show` is not implemented yet")


@results_app.command("query")
def results_query() -> None:
    """Run SQL over summaries and step metrics (polars SQLContext)."""
    raise PyphaseError("`pyphase results query` is not implemented yet")


@app.command()
def compare() -> None:
    """Predicted against measured: β, LR_opt per batch size, clip frequency, regimes, baseline rules."""
    raise PyphaseError("`pyphase compare` is not implemented yet")


@app.command()
def report() -> None:
    """Write a Markdown report with tables, plots and the answer in words."""
    raise PyphaseError("`pyphase report` is not implemented yet")


# --------------------------------------------------------------------------- entry point
def main() -> None:
    """Console-script entry: run the app; user errors become one line on stderr and exit 2."""
    try:
        app()
    except PyphaseError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        # ValueError is what the Rust core raises for bad input; its message names the problem.
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        typer.echo(f"error: {msg}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
