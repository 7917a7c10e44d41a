"""Finding and reading measured results: which experiments exist under the result roots, their
per-run summaries and step metrics as polars frames, SQL over them, and text/CSV/JSON output.

Two layouts are read (see `pyphase.schema`), and `export_experiment` writes the second from the first:

* run folders   ``<root>/<experiment>/<run_id>/summary.parquet`` (+ ``steps.parquet``), as the
  trainer writes them; a run is finished exactly when its summary.parquet exists;
* committed     ``<root>/<experiment>/summary.csv`` (+ ``steps.parquet``, ``provenance.json``).

Which roots a command reads (`roots_from_options`): the folders the user gave (``--runs``,
``--results``) and only those; ``runs/`` then ``results/`` when neither was given. When one
experiment appears under several roots, the first root wins (``--runs`` before ``--results``, and
by default ``runs/`` before ``results/``: a sweep in progress is fresher than what was committed).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pyphase.errors import PyphaseError, first_line
from pyphase.schema import (
    PREDICTION_COLUMNS,
    SEED_SUMMARY_COLUMNS,
    STEP_COLUMNS,
    SUMMARY_COLUMNS,
    SUMMARY_DTYPES,
)

DEFAULT_ROOTS: tuple[Path, ...] = (Path("runs"), Path("results"))

SUMMARY_FILE = "summary.parquet"
STEPS_FILE = "steps.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
PACKS_DIR = "_packs"  # the sweep's checkpoints of packs still training: <experiment>/_packs/<pack_id>.ckpt
CONFIG_FILE = "config.json"
PLAN_FILE = "plan.json"  # the sweep's last plan: every run_id of the experiment (all shards)
COMMITTED_SUMMARY_FILE = "summary.csv"
PROVENANCE_FILE = "provenance.json"

RUNS_LAYOUT = "runs"
COMMITTED_LAYOUT = "committed"


# Corpus milestones a summary may carry as extra columns (nats/char; vocabulary size).
CORPUS_ENTROPY_COLUMNS = ("corpus_unigram_entropy", "corpus_bigram_entropy", "corpus_vocab_size")

# Strings a committed CSV may use for "no value" (the seed wrote Python's None).
CSV_NULLS = ["", "None", "null", "NA"]

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class ExperimentSource:
    """One experiment folder under one root."""

    experiment: str
    root: Path
    layout: str  # RUNS_LAYOUT | COMMITTED_LAYOUT
    path: Path
    runs: int
    finished: int
    packs_in_progress: int = 0
    error: str | None = None  # why its summary.csv cannot be read (find_experiments(strict=False))

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "root": str(self.root),
            "layout": self.layout,
            "runs": self.runs,
            "finished": self.finished,
            "packs_in_progress": self.packs_in_progress,
        }


@dataclass(frozen=True)
class ResultSet:
    """Every finished run of the chosen experiments: one summary row per run, steps per logged step."""

    summaries: pl.LazyFrame
    steps: pl.LazyFrame
    sources: tuple[ExperimentSource, ...]

    def source(self, experiment: str) -> ExperimentSource:
        """The folder an experiment was read from."""
        for s in self.sources:
            if s.experiment == experiment:
                return s
        raise PyphaseError(f"experiment '{experiment}' is not in this result set")

    def provenance(self, experiment: str) -> dict[str, Any]:
        """The experiment folder's provenance.json, or {} when there is none."""
        return read_provenance(self.source(experiment).path)


@dataclass(frozen=True)
class CorpusEntropies:
    """Loss milestones of the training corpus in nats/char, and where they were read."""

    unigram: float
    bigram: float
    vocab_size: int | None
    source: str


# --------------------------------------------------------------------------- discovery
def _roots(root: Path | str | Sequence[Path | str] | None) -> list[Path]:
    if root is None:
        return list(DEFAULT_ROOTS)
    if isinstance(root, (str, Path)):
        return [Path(root)]
    return [Path(r) for r in root]


def roots_from_options(runs: Path | str | None = None, results: Path | str | None = None) -> list[Path]:
    """The roots a command reads from its --runs and --results options (None: the option was not
    given). A given folder is authoritative: when either option is given only the given folders are
    read (--runs first), and the default of the other is not consulted; with neither, the defaults
    runs/ then results/ (`DEFAULT_ROOTS`)."""
    given = [Path(r) for r in (runs, results) if r is not None]
    return given or list(DEFAULT_ROOTS)


def _describe_roots(roots: Sequence[Path]) -> str:
    return " or ".join(f"{r}/" for r in roots)


def describe_source(src: ExperimentSource, code: bool = False) -> str:
    """Where an experiment's measurements were read, in words: "read from runs/smoke (runs layout,
    12 finished runs)" (the folder in backticks with `code`, for Markdown)."""
    where = f"`{src.path}`" if code else str(src.path)
    return f"read from {where} ({src.layout} layout, {src.finished} finished runs)"


def _unread_default(roots: Sequence[Path], experiment: str) -> str:
    """A hint for an experiment that none of `roots` holds: a default root that was not read
    (other roots were given) and holds it; empty when none does."""
    try:
        unread = [r for r in DEFAULT_ROOTS if all(r.resolve() != g.resolve() for g in roots)]
        found = [s for s in find_experiments(unread, strict=False) if s.experiment == experiment]
    except (OSError, PyphaseError):
        return ""
    return f" ({found[0].path}/ exists, but {found[0].root}/ is not among the folders read)" if found else ""


def _is_run_folder(path: Path) -> bool:
    """A run's folder; not an exported experiment (summary.csv beside its steps.parquet), which a
    folder of several exports (e.g. results/recheck_*/) holds."""
    return (path.is_dir() and not (path / COMMITTED_SUMMARY_FILE).is_file()
            and any((path / f).exists() for f in (SUMMARY_FILE, STEPS_FILE, CONFIG_FILE, CHECKPOINT_FILE)))


def _committed_row_count(csv_path: Path) -> int:
    try:
        return pl.scan_csv(csv_path, null_values=CSV_NULLS).select(pl.len()).collect().item()
    except pl.exceptions.PolarsError as e:
        raise PyphaseError(f"{csv_path}: unreadable CSV ({first_line(e)})") from e


def _source_of(folder: Path, root: Path, strict: bool = True) -> ExperimentSource | None:
    if (folder / COMMITTED_SUMMARY_FILE).is_file():
        try:
            n = _committed_row_count(folder / COMMITTED_SUMMARY_FILE)
        except PyphaseError as e:
            if strict:
                raise
            return ExperimentSource(folder.name, root, COMMITTED_LAYOUT, folder, 0, 0, error=str(e))
        return ExperimentSource(folder.name, root, COMMITTED_LAYOUT, folder, n, n)
    runs = [d for d in folder.iterdir() if _is_run_folder(d)]
    packs = len(list((folder / PACKS_DIR).glob("*.ckpt")))
    planned = _planned_run_ids(folder / PLAN_FILE)
    if not runs and not packs and not planned:
        return None
    finished = sum((d / SUMMARY_FILE).is_file() for d in runs)
    # runs the plan names but no folder holds yet (other shards', later packs') count as unfinished
    return ExperimentSource(folder.name, root, RUNS_LAYOUT, folder, len({d.name for d in runs} | planned), finished,
                            packs)


def _planned_run_ids(path: Path) -> set[str]:
    """The run_ids of a sweep's plan.json (empty if there is none or it cannot be read)."""
    try:
        ids = json.loads(path.read_text()).get("run_ids", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(i) for i in ids} if isinstance(ids, list) else set()


def find_experiments(root: Path | str | Sequence[Path | str] | None = None, strict: bool = True) -> list[ExperimentSource]:
    """Every experiment folder under the roots (missing roots are skipped), in root order then by name.
    An unreadable committed summary.csv raises PyphaseError, or with strict=False is returned with
    its `error` (so that it stops only a command that reads that experiment)."""
    found: list[ExperimentSource] = []
    for r in _roots(root):
        if not r.is_dir():
            continue
        for folder in sorted(p for p in r.iterdir() if p.is_dir()):
            src = _source_of(folder, r, strict)
            if src is not None:
                found.append(src)
    return found


def _first_per_experiment(sources: Sequence[ExperimentSource]) -> list[ExperimentSource]:
    chosen: dict[str, ExperimentSource] = {}
    for s in sources:
        chosen.setdefault(s.experiment, s)
    return list(chosen.values())


# --------------------------------------------------------------------------- reading
def _require_columns(present: Sequence[str], required: Sequence[str], path: Path, hint: str = "") -> None:
    for c in required:
        if c not in present:
            raise PyphaseError(f"{path}: missing column '{c}'{hint}")


def _typed(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    casts = [pl.col(c).cast(t) for c, t in SUMMARY_DTYPES.items() if c in df.columns and df.schema[c] != t]
    try:
        return df.with_columns(casts) if casts else df
    except pl.exceptions.PolarsError as e:
        raise PyphaseError(f"{path}: bad value type ({first_line(e)})") from e


def _fill_identity(df: pl.DataFrame, experiment: str, run_ids: list[str]) -> pl.DataFrame:
    """Fill experiment/run_id from the folder names where the file leaves them out or null."""
    missing = [c for c in SUMMARY_COLUMNS if c not in df.columns]
    df = df.with_columns(pl.lit(None, dtype=SUMMARY_DTYPES[c]).alias(c) for c in missing)
    return df.with_columns(
        pl.col("experiment").fill_null(pl.lit(experiment)),
        pl.col("run_id").fill_null(pl.Series(run_ids, dtype=pl.String)),
    )


def _read_run_summary(run_dir: Path, experiment: str) -> pl.DataFrame:
    path = run_dir / SUMMARY_FILE
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)})") from e
    _require_columns(df.columns, SEED_SUMMARY_COLUMNS, path)
    if df.height != 1:
        raise PyphaseError(f"{path}: expected one row, found {df.height}")
    return _fill_identity(_typed(df, path), experiment, [run_dir.name])


def _read_committed_summary(src: ExperimentSource) -> pl.DataFrame:
    path = src.path / COMMITTED_SUMMARY_FILE
    try:
        header = pl.read_csv(path, n_rows=0).columns
        overrides = {c: SUMMARY_DTYPES[c] for c in header if c in SUMMARY_DTYPES}
        df = pl.read_csv(path, null_values=CSV_NULLS, schema_overrides=overrides)
    except pl.exceptions.PolarsError as e:
        raise PyphaseError(f"{path}: unreadable CSV ({first_line(e)})") from e
    _require_columns(df.columns, SEED_SUMMARY_COLUMNS, path)
    return _fill_identity(df, src.experiment, [f"{src.experiment}-{i}" for i in range(df.height)])


def _summaries_of(src: ExperimentSource) -> list[pl.DataFrame]:
    if src.layout == COMMITTED_LAYOUT:
        return [_read_committed_summary(src)]
    runs = sorted(d for d in src.path.iterdir() if (d / SUMMARY_FILE).is_file())
    return [_read_run_summary(d, src.experiment) for d in runs]


# What to do about a finished run whose steps.parquet is missing or damaged: the trainer's words for it
# (pyphase.sweep's check of a finished run), so that `train` and every reader of the runs say the same.
RERUN_HINT = "remove its run folder to train the run again"


_UNREAD: Any = object()  # `_steps_hint`'s record when the caller has not read it


def _steps_hint(src: ExperimentSource, record: dict[str, Any] | None = _UNREAD) -> str:
    """What to do about a damaged steps file of `src`, after "; " (empty when the folder itself says
    nothing: a committed one without an export's provenance). `record`: its `_exported_steps`, where
    the caller has read it already."""
    if src.layout == RUNS_LAYOUT:
        return f"; {RERUN_HINT}"
    if record is _UNREAD:
        record = _exported_steps(src)
    return f"; {_REEXPORT_HINT}" if record is not None else ""


def _scan_steps_file(path: Path, experiment: str, hint: str = "") -> pl.LazyFrame:
    try:
        lf = pl.scan_parquet(path)
        columns = lf.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)}){hint}") from None
    _require_columns(columns, STEP_COLUMNS, path, hint)
    if "experiment" not in columns:
        lf = lf.with_columns(pl.lit(experiment).alias("experiment"))
    return lf


def _steps_files(src: ExperimentSource) -> list[Path]:
    """The steps files `src` must have: a committed folder's steps.parquet where it is there (it is
    optional), and every finished run's steps.parquet, whether it is there or not."""
    if src.layout == COMMITTED_LAYOUT:
        path = src.path / STEPS_FILE
        return [path] if path.is_file() else []
    return sorted(d / STEPS_FILE for d in src.path.iterdir() if (d / SUMMARY_FILE).is_file())


def _steps_of(src: ExperimentSource, hint: str | None = None) -> list[pl.LazyFrame]:
    """The step metrics of `src`, lazily. Every finished run has its steps.parquet (the trainer writes it
    before the summary): one that is missing or unreadable is a PyphaseError naming it, as `train`
    says of it. A committed folder's steps.parquet is optional: the seed's tables have none, and an
    export may be committed without it (results/recheck_h200x4_7d039b3/phase2_5: summary and
    provenance only); where it is there, `_check_exported_steps` checks it against the provenance."""
    hint = _steps_hint(src) if hint is None else hint
    return [_scan_steps_file(f, src.experiment, hint) for f in _steps_files(src)]


# What to do about an exported folder whose steps.parquet does not hold what its provenance.json says.
_REEXPORT_HINT = "restore the folder (e.g. git checkout) or export the experiment again from its run folders"


def _exported_steps(src: ExperimentSource) -> dict[str, Any] | None:
    """provenance.json's record of steps.parquet (`files.steps`) where `export_experiment` wrote the
    committed folder `src`; None otherwise (no export's provenance, or one that cannot be read: the
    commands that need the provenance itself say so)."""
    if src.layout != COMMITTED_LAYOUT:
        return None
    try:
        prov = read_provenance(src.path)
    except (PyphaseError, OSError):
        return None
    files = prov.get("files")
    steps = files.get("steps") if prov.get("kind") == PROVENANCE_KIND and isinstance(files, dict) else None
    return steps if isinstance(steps, dict) else None


def _check_exported_steps(src: ExperimentSource, summaries: pl.DataFrame, record: dict[str, Any],
                          lf: pl.LazyFrame) -> None:
    """An exported folder's steps.parquet holds what its provenance.json records: some steps of every
    run of summary.csv (a thinned export keeps each run's last row, so it too holds every run) and the
    number of rows recorded. PyphaseError in one line naming the file otherwise; a folder without an
    export's provenance is not checked (the seed's committed tables have no steps). `record`: its
    `_exported_steps`; `lf`: its steps.parquet as `_steps_of` scanned it (columns checked)."""
    path = src.path / STEPS_FILE
    try:
        rows = lf.select(pl.len()).collect().item()
        held = set(lf.select(pl.col("run_id").unique()).collect().to_series().to_list())
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)}); {_REEXPORT_HINT}") from None
    lacking = _runs_without_steps(summaries, held)
    if lacking:
        named = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
        raise PyphaseError(
            f"{path}: no steps of {len(lacking)} of the {summaries.height} runs of {COMMITTED_SUMMARY_FILE} "
            f"({named}), though {PROVENANCE_FILE} records {record.get('sampling') or 'the steps of every run'}; "
            f"{_REEXPORT_HINT}")
    recorded = record.get("rows")
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded != rows:
        raise PyphaseError(f"{path}: holds {rows} rows, {PROVENANCE_FILE} records {recorded}; {_REEXPORT_HINT}")


def _empty_steps() -> pl.LazyFrame:
    return pl.LazyFrame(
        schema={c: pl.Float64() for c in STEP_COLUMNS} | {"run_id": pl.String(), "experiment": pl.String()}
    )


def _select_sources(roots: list[Path], experiment: str | Sequence[str] | None) -> list[ExperimentSource]:
    sources = _first_per_experiment(find_experiments(roots, strict=experiment is None))
    if experiment is None:
        chosen = [s for s in sources if s.finished > 0]
        if not chosen:
            raise PyphaseError(f"no finished runs under {_describe_roots(roots)}")
        return chosen
    # an experiment named twice is read once (its runs would otherwise count twice, as extra seeds)
    wanted = [experiment] if isinstance(experiment, str) else list(dict.fromkeys(experiment))
    by_name = {s.experiment: s for s in sources}
    for name in wanted:
        if name not in by_name:
            raise PyphaseError(
                f"no results for experiment '{name}' under {_describe_roots(roots)}{_unread_default(roots, name)}")
        s = by_name[name]
        if s.error is not None:
            raise PyphaseError(s.error)
        if s.finished == 0:
            raise PyphaseError(f"experiment '{name}' under {s.root}/ has no finished runs (0 of {s.runs})")
    return [by_name[n] for n in wanted]


def scan(
    root: Path | str | Sequence[Path | str] | None = None,
    experiment: str | Sequence[str] | None = None,
) -> ResultSet:
    """Read every finished run of `experiment` (one name, several, or all) under the roots.

    Summaries are read and validated now (one small row per run), so a malformed file fails here
    with one line naming it; step metrics stay lazy (only their schema is checked). A finished run
    whose steps.parquet is missing or unreadable fails here too, in `train`'s words (`RERUN_HINT`), as
    does an exported folder whose steps.parquet lacks a run of its summary.csv or the rows its
    provenance.json records (`_check_exported_steps`).
    """
    roots = _roots(root)
    sources = _select_sources(roots, experiment)
    frames = []
    committed_steps: dict[int, list[pl.LazyFrame]] = {}  # source index -> its steps, scanned once
    for i, s in enumerate(sources):
        read = _summaries_of(s)
        if s.layout == COMMITTED_LAYOUT:
            record = _exported_steps(s)
            committed_steps[i] = _steps_of(s, _steps_hint(s, record))
            if record is not None and committed_steps[i]:
                _check_exported_steps(s, read[0], record, committed_steps[i][0])
        frames += read
    summaries = pl.concat(frames, how="diagonal_relaxed")
    step_frames = [lf for i, s in enumerate(sources) for lf in (committed_steps[i] if i in committed_steps else _steps_of(s))]
    steps = pl.concat(step_frames, how="diagonal_relaxed") if step_frames else _empty_steps()
    return ResultSet(summaries.lazy(), steps, tuple(sources))


def read_provenance(folder: Path) -> dict[str, Any]:
    """An experiment folder's provenance.json as a dict ({} when absent)."""
    path = folder / PROVENANCE_FILE
    return read_json_object(path) if path.is_file() else {}


def corpus_entropies(rs: ResultSet, experiment: str) -> CorpusEntropies | None:
    """Unigram/bigram entropy (nats/char) and vocabulary size of the corpus an experiment trained on.

    Read from the summary columns `corpus_unigram_entropy`, `corpus_bigram_entropy`,
    `corpus_vocab_size` when present, else from provenance.json's `corpus_entropies` object
    (keys `unigram`, `bigram`, optional `vocab_size`); None when neither records them.
    """
    df = rs.summaries.filter(pl.col("experiment") == experiment).collect()
    if all(c in df.columns for c in CORPUS_ENTROPY_COLUMNS[:2]):
        row = df.select(CORPUS_ENTROPY_COLUMNS[:2]).drop_nulls()
        if row.height:
            vocab = df["corpus_vocab_size"].drop_nulls() if "corpus_vocab_size" in df.columns else []
            v = int(vocab[0]) if len(vocab) else None
            return CorpusEntropies(float(row[0, 0]), float(row[0, 1]), v, "summary columns")
    ent = rs.provenance(experiment).get("corpus_entropies")
    if not isinstance(ent, dict):
        return None
    try:
        vocab_size = int(ent["vocab_size"]) if ent.get("vocab_size") is not None else None
        return CorpusEntropies(float(ent["unigram"]), float(ent["bigram"]), vocab_size, "provenance.json")
    except (KeyError, TypeError, ValueError) as e:
        path = rs.source(experiment).path / PROVENANCE_FILE
        raise PyphaseError(f"{path}: corpus_entropies needs numeric 'unigram' and 'bigram' ({e})") from e


def entropies_of_corpus(path: Path | str, rs: ResultSet, experiment: str) -> CorpusEntropies:
    """Entropies of the train split of the corpus at `path` (pyphase.data.load_corpus), after checking
    that its sha256 is the one the experiment's runs recorded (when they recorded one)."""
    from pyphase.data import load_corpus

    corpus = load_corpus(path)
    recorded = set(
        rs.summaries.filter(pl.col("experiment") == experiment).select("corpus_sha256").collect().to_series()
    )
    recorded.discard(None)
    if recorded and corpus.sha256 not in recorded:
        raise PyphaseError(
            f"--corpus {path}: sha256 {corpus.sha256[:12]}... is not the corpus experiment '{experiment}' trained on "
            f"({', '.join(sorted(h[:12] + '...' for h in recorded))})"
        )
    return CorpusEntropies(
        corpus.unigram_entropy, corpus.bigram_entropy, corpus.tokenizer.vocab_size, f"corpus {path} (train split)"
    )


# --------------------------------------------------------------------------- tables and SQL
def json_safe(obj: Any) -> Any:
    """The same structure with non-finite floats as null, so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Strict JSON text (NaN/inf become null; dates and paths become strings)."""
    return json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False)


def experiments_table(sources: Sequence[ExperimentSource]) -> pl.DataFrame:
    """One row per experiment folder: name, root, layout, runs, finished."""
    schema = {
        "experiment": pl.String(),
        "root": pl.String(),
        "layout": pl.String(),
        "runs": pl.Int64(),
        "finished": pl.Int64(),
        "packs_in_progress": pl.Int64(),
    }
    return pl.DataFrame([s.to_dict() for s in sources], schema=schema)


def show_table(rs: ResultSet, experiment: str) -> pl.DataFrame:
    """One experiment's runs in the seed's columns (plus seed), sorted by batch, LR, clip, seed."""
    cols = SEED_SUMMARY_COLUMNS + ["seed"]
    return (
        rs.summaries.filter(pl.col("experiment") == experiment)
        .select(cols)
        .sort(["batch_size", "lr", "gradient_clip", "seed"], nulls_last=True)
        .collect()
    )


# Statements that change tables rather than read them: polars' SQLContext runs some (DROP TABLE
# forgets the table and returns an empty frame, which printed as "||" with exit 0); `query` refuses
# them, and any other statement whose result has no columns.
NOT_QUERIES = ("DROP", "CREATE", "DELETE", "INSERT", "UPDATE", "TRUNCATE", "ALTER", "SET", "USE", "COPY", "MERGE",
               "REPLACE", "GRANT", "REVOKE", "ATTACH", "DETACH", "BEGIN", "COMMIT", "ROLLBACK")
QUERY_HINT = "results query only reads the tables summaries and steps (SELECT ..., WITH ... SELECT ...)"
_SQL_LEAD = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.DOTALL)


# polars SQL's table functions, which read files named in the query (read_csv('/any/file')).
_FILE_READERS = re.compile(r"\b(read_(?:csv|parquet|ipc|json|ndjson|delta|excel)|scan_[a-z]+)\s*\(", re.IGNORECASE)


def _statement_keyword(sql: str) -> str:
    """The statement's first word, upper case, after whitespace, comments and opening parentheses."""
    rest = sql[_SQL_LEAD.match(sql).end():]  # type: ignore[union-attr]  # \A(...)* always matches
    word = re.match(r"[A-Za-z_]+", rest)
    return word.group(0).upper() if word else rest[:1]


def query(rs: ResultSet, sql: str) -> pl.DataFrame:
    """Run SQL over the tables `summaries` and `steps` (polars SQLContext). A statement that is not
    a query (DROP, CREATE, ..., an empty one, or one whose result has no columns) is a one-line
    PyphaseError."""
    keyword = _statement_keyword(sql)
    if not keyword or keyword in NOT_QUERIES:
        what = f"{keyword} is not a query" if keyword else "the statement is empty"
        raise PyphaseError(f"SQL: {what}; {QUERY_HINT}")
    reader = _FILE_READERS.search(sql)
    if reader:  # polars SQL's table functions read any file: not the results' tables
        raise PyphaseError(f"SQL: {reader.group(1).lower()}() reads a file; {QUERY_HINT}")
    ctx = pl.SQLContext(summaries=rs.summaries, steps=rs.steps)
    try:
        df = ctx.execute(sql).collect()
    except pl.exceptions.PolarsError as e:
        _raise_if_a_steps_file_is_damaged(rs)  # the data's fault, not the SQL's: name the file
        raise PyphaseError(f"SQL failed: {first_line(e)}") from e
    if not df.columns:
        raise PyphaseError(f"SQL: the statement returned no table (is it a query?); {QUERY_HINT}")
    return df


def collect_steps(rs: ResultSet) -> pl.DataFrame:
    """Every step row of the result set; a damaged steps.parquet fails with one line naming it."""
    try:
        return rs.steps.collect()
    except pl.exceptions.PolarsError as e:
        _raise_if_a_steps_file_is_damaged(rs)
        raise PyphaseError(f"cannot read the step metrics: {first_line(e)}") from e


def _raise_if_a_steps_file_is_damaged(rs: ResultSet) -> None:
    """Read each steps file of the result set whole; raise PyphaseError naming the first that fails."""
    for src in rs.sources:
        hint = _steps_hint(src)
        for f in _steps_files(src):
            try:
                pl.read_parquet(f)
            except (pl.exceptions.PolarsError, OSError) as e:
                raise PyphaseError(f"{f}: unreadable Parquet ({first_line(e)}){hint}") from None


def format_frame(df: pl.DataFrame, fmt: str) -> str:
    """A frame as an aligned table (all rows and columns), CSV, or JSON (a list of row objects)."""
    if fmt == "csv":
        return df.write_csv().rstrip("\n")
    if fmt == "json":
        return to_json(df.to_dicts())
    if fmt == "table":
        with pl.Config(
            tbl_rows=-1,
            tbl_cols=-1,
            tbl_width_chars=10_000,
            fmt_str_lengths=200,
            tbl_hide_dataframe_shape=True,
            tbl_hide_column_data_types=True,
            tbl_formatting="ASCII_MARKDOWN",
        ):
            return str(df)
    raise PyphaseError(f"unknown format '{fmt}': use one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- predictions
@dataclass(frozen=True)
class PredictionFiles:
    """A `pyphase predict` output: its trajectory table and its JSON summary (merged, {} if none)."""

    trajectories: pl.DataFrame
    meta: dict[str, Any]
    source: str


def _prediction_parquets(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.parquet"))
    with_columns = [f for f in files if set(PREDICTION_COLUMNS) <= set(_parquet_columns(f))]
    if not with_columns:
        raise PyphaseError(
            f"{path}/: no Parquet file with the prediction columns ({', '.join(PREDICTION_COLUMNS[:3])}, ...)"
        )
    return with_columns


def _parquet_columns(path: Path) -> list[str]:
    try:
        return pl.scan_parquet(path).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)})") from e


def _read_prediction_table(path: Path) -> pl.DataFrame:
    columns = _parquet_columns(path)
    _require_columns(columns, PREDICTION_COLUMNS, path)
    return pl.read_parquet(path, columns=PREDICTION_COLUMNS)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object, as a dict; one-line PyphaseError for bad JSON or another type."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PyphaseError(f"{path}: invalid JSON ({first_line(e)})") from e
    if not isinstance(data, dict):
        raise PyphaseError(f"{path}: expected a JSON object")
    return data


def read_prediction(path: Path | str) -> PredictionFiles:
    """Read a prediction: a trajectory Parquet file, or a folder holding it (and its JSON summary).

    Every *.json beside the Parquet is merged into `meta` (alphabetical; later files win on a key).
    A folder that `pyphase predict` was interrupted writing (`_check_predict_output`: its tables
    without their prediction.json, or a prediction.json that does not describe its trajectory
    table) is a one-line PyphaseError saying to run predict again.
    """
    path = Path(path)
    if not path.exists():
        raise PyphaseError(f"{path}: no such prediction file or folder")
    files = _prediction_parquets(path)
    tables = [_read_prediction_table(f) for f in files]
    folder = path if path.is_dir() else path.parent
    meta: dict[str, Any] = {}
    summary: dict[str, Any] | None = None
    for j in sorted(folder.glob("*.json")):
        data = read_json_object(j)
        if j.name == PREDICT_SUMMARY_FILE:
            summary = data
        meta |= data
    table = pl.concat(tables, how="vertical_relaxed")
    _check_predict_output(folder, files, table, summary)
    return PredictionFiles(table, meta, str(path))


# What `pyphase predict` writes in its --out folder (pyphase.predict takes these names from here). The
# tables and maps land first and prediction.json last (renamed from temporary names at the end; an older
# pyphase wrote each in place, in that order), so a write stopped midway leaves the tables without their
# prediction.json, or new tables beside an earlier prediction's prediction.json.
PREDICT_TABLE_FILE = "trajectories.parquet"
PREDICT_CURVES_FILE = "curves.parquet"
PREDICT_SUMMARY_FILE = "prediction.json"
PREDICT_SUMMARY_KIND = "pyphase.prediction"
PREDICT_MAP_GLOB = "regime_map_clip*.png"
PREDICT_TABLE_SHA256 = "trajectories_sha256"  # prediction.json's record of trajectories.parquet's bytes


def _interrupted_predict(folder: Path, why: str) -> PyphaseError:
    return PyphaseError(f"{folder}: looks like an interrupted or mixed `pyphase predict` output ({why}); "
                        f"run pyphase predict again (--out {folder})")


def _check_predict_output(folder: Path, files: Sequence[Path], table: pl.DataFrame,
                          summary: dict[str, Any] | None) -> None:
    """PyphaseError (`_interrupted_predict`) where the prediction in `folder` is a `pyphase predict`
    output that was not written whole: its files without prediction.json, or a pyphase prediction.json
    that does not describe the trajectory table `table` (read from `files`)."""
    if summary is None:
        written = [n for n in (PREDICT_TABLE_FILE, PREDICT_CURVES_FILE) if (folder / n).is_file()]
        maps = sorted(p.name for p in folder.glob(PREDICT_MAP_GLOB) if p.is_file())
        # Accepted without prediction.json: a table of another name (predict writes none), and a
        # trajectories.parquet alone beside some other JSON file (a summary predict never writes, so
        # the folder was made by hand); predict's curves or maps, or its table with no JSON at all,
        # are what a write stopped before prediction.json leaves.
        other_json = any(p.is_file() for p in folder.glob("*.json"))
        if maps or PREDICT_CURVES_FILE in written or (written and not other_json):
            found = written + ([f"{len(maps)} regime map{'s' if len(maps) > 1 else ''}"] if maps else [])
            listed = ", ".join(found[:-1]) + " and " + found[-1] if len(found) > 1 else found[0]
            raise _interrupted_predict(folder, f"{listed} but no {PREDICT_SUMMARY_FILE}")
        return
    if summary.get("kind") != PREDICT_SUMMARY_KIND:
        return  # a prediction.json that pyphase did not write records nothing to check
    why = _summary_mismatch(folder, files, table, summary)
    if why is not None:
        raise _interrupted_predict(folder, why)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _values_text(values: Sequence[Any]) -> str:
    shown = ["none" if v is None else format(v, "g") if isinstance(v, float) else str(v) for v in values]
    return f"[{', '.join(shown)}]" if len(shown) <= 6 else f"{len(shown)} values {shown[0]}..{shown[-1]}"


def _summary_mismatch(folder: Path, files: Sequence[Path], table: pl.DataFrame,
                      summary: dict[str, Any]) -> str | None:
    """How a pyphase prediction.json disagrees with the trajectory table beside it (None if it does
    not): trajectories.parquet's sha256 where the summary records it (pyphase since it wrote predictions
    atomically: certain even for a rerun over the same grid), then what every summary records of the
    grid: optimizer, clips, batch sizes, LRs, number of seeds, rows (clips x B x LRs x seeds), and
    steps (no divergence after the last step). Only fields the summary holds, with the expected type,
    are compared."""
    from pyphase.data import sha256_file

    names = ", ".join(f.name for f in files)
    recorded = summary.get(PREDICT_TABLE_SHA256)
    table_file = folder / PREDICT_TABLE_FILE
    if isinstance(recorded, str) and table_file in files and sha256_file(table_file) != recorded:
        return f"{PREDICT_TABLE_FILE} is not the table its {PREDICT_SUMMARY_FILE} was written with"

    def differs(what: str, said: Sequence[Any], holds: Sequence[Any]) -> str:
        return f"{PREDICT_SUMMARY_FILE} records {what} {_values_text(said)}, {names} holds {_values_text(holds)}"

    opt = summary.get("optimizer")
    held_opts = sorted(table["optimizer"].drop_nulls().unique().to_list())
    if isinstance(opt, str) and held_opts != [opt]:
        return differs("optimizer", [opt], held_opts)
    groups = summary.get("groups")
    clips: list[Any] | None = None
    if isinstance(groups, list) and groups and all(
            isinstance(g, dict) and "clip" in g and (g["clip"] is None or _is_real(g["clip"])) for g in groups):
        clips = sorted({g["clip"] for g in groups}, key=lambda c: (c is not None, c or 0.0))
        held = sorted(table["clip"].unique().to_list(), key=lambda c: (c is not None, c or 0.0))
        if held != clips:
            return differs("clips", clips, held)
    batches = summary.get("batch_sizes")
    if not (isinstance(batches, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in batches)):
        batches = None
    if batches is not None:
        held = sorted(table["batch_size"].unique().to_list())
        if sorted(batches) != held:
            return differs("batch sizes", sorted(batches), held)
    lrs = summary.get("lrs")
    if not (isinstance(lrs, list) and all(_is_real(v) for v in lrs)):
        lrs = None
    if lrs is not None:
        said, held = sorted(set(map(float, lrs))), sorted(table["lr"].unique().to_list())
        if len(said) != len(held) or not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(said, held)):
            return differs("LRs", said, held)
    seeds = summary.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        held_seeds = table["seed"].n_unique()
        if held_seeds != seeds:
            return f"{PREDICT_SUMMARY_FILE} records {seeds} seeds, {names} holds {held_seeds}"
        if clips is not None and batches is not None and lrs is not None:
            rows = len(clips) * len(set(batches)) * len(set(lrs)) * seeds
            if table.height != rows:
                return f"{PREDICT_SUMMARY_FILE} records {rows} trajectories, {names} holds {table.height}"
    steps = summary.get("steps")
    # cast first: polars 1.x has no max() of an all-null column of dtype Null
    last = table["diverged_step"].cast(pl.Int64, strict=False).max() if "diverged_step" in table.columns else None
    if isinstance(steps, int) and not isinstance(steps, bool) and last is not None and last > steps:
        return f"{PREDICT_SUMMARY_FILE} records {steps} steps, {names} diverged at step {last}"
    return None


# --------------------------------------------------------------------------- what the CLI prints
def list_text(root: Path | Sequence[Path] | None, fmt: str = "table") -> str:
    """`pyphase results list`: every experiment folder under the roots with run counts."""
    roots = _roots(root)
    sources = find_experiments(roots)
    if not sources:
        raise PyphaseError(f"no experiments under {_describe_roots(roots)}")
    return format_frame(experiments_table(sources), fmt)


def show_text(root: Path | Sequence[Path] | None, experiment: str, fmt: str = "table") -> str:
    """`pyphase results show`: one experiment's runs in the seed's columns, after one line saying
    where they were read (`describe_source`); for csv and json that line goes to stderr instead, so
    that stdout stays one parseable table."""
    rs = scan(root, experiment)
    line = f"{experiment}: {describe_source(rs.source(experiment))}"
    text = format_frame(show_table(rs, experiment), fmt)
    if fmt in ("csv", "json"):
        print(line, file=sys.stderr)
        return text
    return f"{line}\n{text}"


def query_text(root: Path | Sequence[Path] | None, sql: str, fmt: str = "table", experiment: str | None = None) -> str:
    """`pyphase results query`: SQL over `summaries` and `steps` of every (or one) experiment."""
    return format_frame(query(scan(root, experiment), sql), fmt)


# --------------------------------------------------------------------------- export (runs -> committed)
# Committed step metrics stay small enough for git: above this many bytes (zstd) per experiment the
# steps are thinned to every step up to THIN_FULL_UNTIL, every THIN_EVERY-th after, plus every
# evaluation row and each run's last row (provenance.json says which).
STEPS_MAX_BYTES = 3_000_000
THIN_FULL_UNTIL = 1000
THIN_EVERY = 10
ZSTD_LEVEL = 19
PROVENANCE_KIND = "pyphase.results"

# Provenance keys that export derives from the runs themselves; a caller may not supply them.
DERIVED_PROVENANCE_KEYS = (
    "kind",
    "version",
    "experiment",
    "exported_utc",
    "device",
    "torch_version",
    "git_commit",
    "numerics",
    "environments",
    "corpus",
    "corpus_entropies",
    "runs",
    "seeds",
    "configs",
    "num_steps",
    "run_config",
    "files",
)
# Keys the caller supplies (command, notes, ...) are kept from an earlier export when not given
# again, so re-exporting after more runs land needs only the experiment name.


def _unique_or_list(values: Sequence[Any]) -> Any:
    distinct = sorted({v for v in values if v is not None}, key=str)
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else distinct


def _environments(summaries: pl.DataFrame) -> list[dict[str, Any]]:
    """Each distinct (device, torch, commit, and numerics where the summaries record it) and the
    seeds and runs that ran on it."""
    keys = ["device", "torch_version", "git_commit"] + (["numerics"] if "numerics" in summaries.columns else [])
    out = []
    for part in summaries.partition_by(keys, maintain_order=False):
        row = {k: part[k][0] for k in keys}
        out.append(row | {"seeds": sorted(set(part["seed"].drop_nulls().to_list())), "runs": part.height})
    return sorted(out, key=lambda r: (str(r["git_commit"]), str(r["device"]), r["seeds"]))


def _run_configs(run_dirs: Sequence[Path]) -> dict[str, Any]:
    """Fields of the runs' config.json equal in every run (e.g. model shape, steps, betas), and the
    names of those that vary (batch size, LR, clip, seed)."""
    configs = []
    for d in run_dirs:
        path = d / CONFIG_FILE
        if path.is_file():
            configs.append(read_json_object(path))
    if not configs:
        return {}
    common = {k: v for k, v in configs[0].items() if all(c.get(k) == v for c in configs[1:])}
    varies = sorted({k for c in configs for k in c} - set(common))
    return {"common": common, "varies": varies, "read_from": len(configs)}


def _corpus_facts(summaries: pl.DataFrame, corpus_path: Path | None, previous: Mapping[str, Any]) -> dict[str, Any]:
    """Corpus name and sha256 the runs recorded; split sizes from `corpus_path` (checked against the
    sha256), else from an earlier export of the same corpus."""
    facts = {
        "name": _unique_or_list(summaries["corpus"].to_list()),
        "sha256": _unique_or_list(summaries["corpus_sha256"].to_list()),
    }
    if corpus_path is None:
        before = previous.get("corpus")
        if isinstance(before, dict) and before.get("sha256") == facts["sha256"]:
            return facts | {k: before[k] for k in ("train_chars", "valid_chars") if k in before}
        return facts
    from pyphase.data import load_corpus

    corpus = load_corpus(corpus_path)
    if facts["sha256"] is not None and corpus.sha256 != facts["sha256"]:
        raise PyphaseError(
            f"--corpus {corpus_path}: sha256 {corpus.sha256[:12]}... is not the corpus the runs recorded ({facts['sha256']})"
        )
    return facts | {"train_chars": int(corpus.train.size), "valid_chars": int(corpus.valid.size)}


def _thin_steps(steps: pl.DataFrame) -> pl.DataFrame:
    last = pl.col("step") == pl.col("step").max().over("run_id")
    keep = (
        (pl.col("step") <= THIN_FULL_UNTIL)
        | (pl.col("step") % THIN_EVERY == 0)
        | pl.col("val_loss").is_not_null()
        | pl.col("weight_norm").is_not_null()
        | last
    )
    return steps.filter(keep)


def _write_steps(steps: pl.DataFrame, path: Path, max_bytes: int) -> dict[str, Any]:
    """Write the step metrics (zstd) to `path` (a temporary name: the caller renames it to
    steps.parquet); thin them when the full table would exceed `max_bytes`."""
    steps.write_parquet(path, compression="zstd", compression_level=ZSTD_LEVEL)
    sampling = "every logged step of every finished run"
    rows = steps.height
    if path.stat().st_size > max_bytes:
        thinned = _thin_steps(steps)
        thinned.write_parquet(path, compression="zstd", compression_level=ZSTD_LEVEL)
        sampling = (
            f"thinned (the full table exceeded {max_bytes:,} bytes): every step up to step {THIN_FULL_UNTIL}, "
            f"every {THIN_EVERY}th step after it, every evaluation row and each run's last row"
        )
        rows = thinned.height
    size = path.stat().st_size
    return {"file": STEPS_FILE, "rows": rows, "rows_in_runs": steps.height, "sampling": sampling, "bytes": size}


def check_output_folder(folder: Path, option: str) -> None:
    """PyphaseError (one line starting with `option`, e.g. "--dest results") unless `folder` is a
    folder or can be made one: no part of its path is an existing file, and the deepest existing
    folder on it can be written in. Checks only; creates nothing."""
    folder = Path(folder)
    deepest = None
    for p in [*reversed(folder.parents), folder]:
        try:
            if not p.exists():
                break
            if not p.is_dir():
                raise PyphaseError(f"{option}: {p} is a file, not a folder")
        except OSError as e:  # e.g. a name longer than the file system allows
            raise PyphaseError(f"{option}: {e.strerror or e}: {p}") from None
        deepest = p
    if deepest is not None and not os.access(deepest, os.W_OK | os.X_OK):
        raise PyphaseError(f"{option}: cannot write in {deepest} (permission denied)")


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first (what mkdir(parents=True)
    would make)."""
    missing = []
    for p in [folder, *folder.parents]:
        try:
            if p.exists() or p.is_symlink():
                break
        except OSError:
            break
        missing.append(p)
    return missing[::-1]


def remove_empty_folders(made: Sequence[Path]) -> None:
    """Remove the folders in `made` (outermost first, as `missing_folders` gives them), innermost
    first, while they are empty: only what this process made and left empty."""
    for p in reversed(made):
        try:
            p.rmdir()
        except OSError:
            return


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _replace_together(folder: Path, staged: Mapping[str, Path], done: list[str]) -> None:
    """Rename each fully written temporary file in `staged` (final name -> temporary path, both in
    `folder`) onto its final name, one right after the other, after they are all on disk; `done`
    collects the names renamed so far (for the error message if one fails)."""
    for name, tmp in staged.items():
        os.replace(tmp, folder / name)
        done.append(name)
    try:  # the renames themselves on disk (best effort: not every platform opens folders)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class CtrlCGuard:
    """Ctrl-C (SIGINT) while a staged write (predict, report) is under way: the first raises KeyboardInterrupt as usual, and
    any more are dropped until the block ends, so the cleanup after the first runs whole (a Ctrl-C
    during a Parquet write can come back as two KeyboardInterrupts, polars' and Python's); inside
    `held()` (the renames) one is held and raised when the hold ends. Only in the main thread (the only
    one Python delivers signals to); elsewhere a no-op."""

    def __init__(self) -> None:
        self.raised = self.holding = self.pending = False
        self.previous: Any = None
        self.active = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.raised:
            return
        if self.holding:
            self.pending = True
            return
        self.raised = True
        raise KeyboardInterrupt

    def __enter__(self) -> CtrlCGuard:
        # only over Python's own Ctrl-C handler: an ignored SIGINT (a background job) stays ignored, and
        # a handler not set from Python (getsignal None) could not be put back
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._handler)
            self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            self.raised = True
            raise KeyboardInterrupt


def staged_write_failure(renamed: Sequence[str], had_earlier: bool, what: str, again: str) -> str:
    """What a failed staged write (`_replace_together`) left, in words for its error: the files
    already renamed into place (then `again`), or that an earlier `what` there is unchanged."""
    if renamed:
        return (f"; {', '.join(renamed)} already replaced, "
                + (f"the other files are the earlier {what}'s" if had_earlier else "the others not written")
                + f": {again}")
    return f"; an earlier {what} there is unchanged" if had_earlier else ""


def remove_staged(staged: Mapping[str, Path]) -> None:
    """Remove the temporary files of a staged write that are still there (best effort)."""
    for tmp in staged.values():
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _staged_host() -> str:
    """This machine's name as staged files carry it: the host name with every character but letters,
    digits and '-' as '_' (so the tag's fields split on '.'), "unknown" where there is none."""
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return re.sub(r"[^A-Za-z0-9-]", "_", name)[:64] or "unknown"


def staged_paths(folder: Path, names: Iterable[str]) -> dict[str, Path]:
    """Final name -> the temporary path a staged write (`_replace_together`) writes it under first, in
    the order given: ".<name>.tmp.<host>.<pid>" in `folder`. The host and pid say whose it is, so that
    a later write can tell one a killed writer left from one a running writer still needs
    (`remove_stale_staged`)."""
    tag = f".tmp.{_staged_host()}.{os.getpid()}"
    return {name: folder / f".{name}{tag}" for name in names}


def _process_exists(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (True where that cannot be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # no process can have that id
        return False
    except OSError:  # PermissionError: it exists, as another user's; anything else: cannot tell
        return True
    return True


def remove_stale_staged(folder: Path, names: Iterable[str], name_glob: str | None = None) -> list[str]:
    """Remove the temporary files that a staged write into `folder` killed before its own cleanup
    (SIGKILL, a crash, the machine going down) left there; the names removed, sorted. Best effort:
    one that cannot be removed or read stays, and never fails the write.

    Only regular files named as `staged_paths` names the temporaries of `names` (or of any name that
    `name_glob` matches, e.g. predict's regime maps of other clip values) are candidates:
    ".<name>.tmp.<host>.<pid>" with this machine's host, or ".<name>.tmp.<pid>" as an older pyphase
    named them. One is removed only when no process `pid` exists on this machine, so a writer still
    running here keeps its temporaries (a dead writer's pid that another process took since only keeps
    them until that one ends); one tagged with another host is never touched (its pid says nothing
    here: a folder shared by several machines). The untagged older form cannot say its host, so it is
    taken as this machine's. Not on platforms without POSIX signals (os.kill(pid, 0) is no probe
    there): nothing is removed."""
    if os.name != "posix":
        return []
    exact = set(names)
    host = _staged_host()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _STAGED_NAME.fullmatch(entry.name)
        if m is None or (m["host"] is not None and m["host"] != host):
            continue
        name = m["name"]
        if name not in exact and not (name_glob is not None and fnmatch.fnmatchcase(name, name_glob)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or _process_exists(int(m["pid"])):
                continue
            os.unlink(entry.path)
        except OSError:  # gone already (another write removed it first), or cannot be removed: leave it
            continue
        removed.append(entry.name)
    return sorted(removed)


# what staged_paths names (".<name>.tmp.<host>.<pid>") and what an older pyphase did (".<name>.tmp.<pid>")
_STAGED_NAME = re.compile(r"\.(?P<name>.+)\.tmp\.(?:(?P<host>[A-Za-z0-9_-]+)\.)?(?P<pid>[1-9][0-9]*)")


def _kept_command_mismatch(previous: Mapping[str, Any], seeds: list[Any], runs: Mapping[str, int]) -> str | None:
    """Why the earlier export's command does not describe these runs (None when it may be kept):
    its seeds or its number of runs (finished + unfinished: the plan) differ from these runs'. An
    earlier export with unfinished runs may have recorded fewer seeds (those finished then): there
    only seeds it had that these runs lack count."""
    if not previous.get("command"):
        return None
    then_runs = previous.get("runs") if isinstance(previous.get("runs"), dict) else {}
    then_seeds = previous.get("seeds")
    partial = bool(then_runs.get("unfinished") or then_runs.get("packs_in_progress"))
    then, now = [], []
    if isinstance(then_seeds, list):
        lost = not set(map(str, then_seeds)) <= set(map(str, seeds))
        if lost or (not partial and sorted(map(str, then_seeds)) != sorted(map(str, seeds))):
            then.append(f"seeds {then_seeds}")
            now.append(f"seeds {seeds}")
    try:
        then_total = int(then_runs.get("finished", 0)) + int(then_runs.get("unfinished", 0))
    except (TypeError, ValueError):
        then_total = None
    now_total = runs["finished"] + runs["unfinished"]
    if then_total is not None and "finished" in then_runs and then_total != now_total:
        then.append(f"{then_total} runs")
        now.append(f"{now_total} runs")
    return f"it made {' and '.join(then)}, these are {' and '.join(now)}" if then else None


def _caller_provenance(provenance: Mapping[str, Any] | None, previous: Mapping[str, Any]) -> dict[str, Any]:
    given = dict(provenance or {})
    clash = [k for k in given if k in DERIVED_PROVENANCE_KEYS]
    if clash:
        raise PyphaseError(f"provenance key '{clash[0]}' is derived from the runs and cannot be supplied")
    kept = {k: v for k, v in previous.items() if k not in DERIVED_PROVENANCE_KEYS and k not in given}
    return kept | given


def export_experiment(
    experiment: str,
    runs_root: Path | str = Path("runs"),
    dest_root: Path | str = Path("results"),
    provenance: Mapping[str, Any] | None = None,
    *,
    corpus: Path | str | None = None,
    allow_unfinished: bool = False,
    max_steps_bytes: int = STEPS_MAX_BYTES,
) -> Path:
    """Write `dest_root/<experiment>/` (summary.csv, steps.parquet, provenance.json) from the run
    folders under `runs_root`, and return that folder.

    provenance.json holds what the runs recorded (device, torch version, git commit per seed,
    corpus name and sha256, corpus entropies as `corpus_entropies` reads them, the runs' common
    config) plus the caller's `provenance` fields (e.g. ``command``, ``notes``); caller fields of an
    earlier export at the same place are kept unless given again, except its ``command`` when its
    seeds or number of runs differ from these runs' (that command did not make them): then
    ``command`` is null and a warning on stderr says so. `corpus` (optional) is checked
    against the runs' sha256 and adds the split sizes in characters. Unfinished runs or packs in
    progress are an error unless `allow_unfinished` (then they are counted in provenance).

    Every check (runs, corpus, destination) comes before anything is written; the three files are
    written under temporary names (".<name>.tmp.<host>.<pid>", `staged_paths`) and renamed onto the
    earlier export's one right after the other at the end, so a failed check or write leaves an
    earlier export as it was; only a failure among the three renames themselves can leave it mixed,
    and its error says so. Temporaries that an export killed midway (SIGKILL, a crash) left in the
    folder are removed first, those of a writer still running excepted (`remove_stale_staged`).
    """
    runs_root, dest_root = Path(runs_root), Path(dest_root)
    out = dest_root / experiment
    check_output_folder(out, f"--dest {dest_root}")
    for name in (COMMITTED_SUMMARY_FILE, STEPS_FILE, PROVENANCE_FILE):
        if (out / name).is_dir():
            raise PyphaseError(f"--dest {dest_root}: {out / name} is a folder, not a file")
    rs = scan(runs_root, experiment)
    src = rs.source(experiment)
    if src.layout != RUNS_LAYOUT:
        raise PyphaseError(f"{src.path}: already in the committed layout; export reads run folders")
    if out.resolve() == src.path.resolve():
        raise PyphaseError(f"--dest {dest_root}: that is where the run folders are ({src.path}); export to another folder")
    unfinished = src.runs - src.finished
    if (unfinished or src.packs_in_progress) and not allow_unfinished:
        raise PyphaseError(
            f"experiment '{experiment}' under {runs_root}/ has {unfinished} unfinished runs and "
            f"{src.packs_in_progress} packs in progress (checkpoints in {src.path / PACKS_DIR}, which may hold runs "
            "of another plan, e.g. another --seeds): finish the sweep, or export them with --allow-unfinished"
        )
    summaries = rs.summaries.collect().sort(["batch_size", "lr", "gradient_clip", "seed", "run_id"], nulls_last=False)
    steps = collect_steps(rs).drop("experiment").sort(["run_id", "step"])
    _check_every_run_has_steps(src, summaries, steps)  # what provenance.json's sampling will claim
    entropies = corpus_entropies(rs, experiment)
    previous = read_provenance(out) if out.is_dir() else {}
    caller = _caller_provenance(provenance, previous)
    run_dirs = sorted(src.path / r for r in summaries["run_id"].to_list())
    runs = {"finished": summaries.height, "unfinished": unfinished, "packs_in_progress": src.packs_in_progress}
    seeds = sorted(set(summaries["seed"].drop_nulls().to_list()))
    warning = None
    if "command" not in dict(provenance or {}):
        why = _kept_command_mismatch(previous, seeds, runs)
        if why is not None:
            caller["command"] = None
            warning = (
                f"warning: the earlier export's command ({'; '.join(map(str, _as_list(previous['command'])))}) is not "
                f"kept: {why}; {out / PROVENANCE_FILE} records command null (give --command to record the "
                "command that made these runs)"
            )
    record: dict[str, Any] = {
        "kind": PROVENANCE_KIND,
        "version": 1,
        "experiment": experiment,
        "exported_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": _unique_or_list(summaries["device"].to_list()),
        "torch_version": _unique_or_list(summaries["torch_version"].to_list()),
        "git_commit": _unique_or_list(summaries["git_commit"].to_list()),
        # precision and numerics switches (train.numerics); None for runs from before the column
        "numerics": _unique_or_list(summaries["numerics"].to_list()) if "numerics" in summaries.columns else None,
        "environments": _environments(summaries),
        "corpus": _corpus_facts(summaries, Path(corpus) if corpus is not None else None, previous),
        "corpus_entropies": None
        if entropies is None
        else {"unigram": entropies.unigram, "bigram": entropies.bigram, "vocab_size": entropies.vocab_size},
        "runs": runs,
        "seeds": seeds,
        "configs": summaries.select(["batch_size", "lr", "gradient_clip", "optimizer"]).n_unique(),
        "num_steps": _unique_or_list(summaries["num_steps"].to_list()),
        "run_config": _run_configs(run_dirs),
    }
    # every check is done: write the three files under temporary names, then rename them together
    staged = staged_paths(out, (COMMITTED_SUMMARY_FILE, STEPS_FILE, PROVENANCE_FILE))
    renamed: list[str] = []
    had_earlier = any((out / name).exists() for name in staged)
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_staged(out, staged)  # what an export killed midway left
        summaries.write_csv(staged[COMMITTED_SUMMARY_FILE])
        steps_info = _write_steps(steps, staged[STEPS_FILE], max_steps_bytes)
        record["files"] = {"summary": {"file": COMMITTED_SUMMARY_FILE, "rows": summaries.height}, "steps": steps_info}
        staged[PROVENANCE_FILE].write_text(to_json(record | caller) + "\n")
        for tmp in staged.values():
            _fsync(tmp)
        _replace_together(out, staged, renamed)
    except (OSError, pl.exceptions.PolarsError) as e:
        kept = staged_write_failure(renamed, had_earlier, "export", "export again")
        raise PyphaseError(f"--dest {dest_root}: cannot write {out} ({first_line(e)}){kept}") from e
    finally:
        remove_staged(staged)
    if warning is not None:
        print(warning, file=sys.stderr)
    return out


def _runs_without_steps(summaries: pl.DataFrame, held: set[Any]) -> list[str]:
    """The run_ids of `summaries` that are not among `held` (the run_ids a steps table holds), in order."""
    return [r for r in summaries["run_id"].to_list() if r not in held]


def _check_every_run_has_steps(src: ExperimentSource, summaries: pl.DataFrame, steps: pl.DataFrame) -> None:
    """PyphaseError naming the steps.parquet of the first finished run that holds none of that run's
    steps (e.g. an emptied file): the export would record "every logged step of every finished run"
    without them."""
    lacking = _runs_without_steps(summaries, set(steps["run_id"].unique().to_list()))
    if lacking:
        more = f" (nor do the steps files of {len(lacking) - 1} other finished runs)" if len(lacking) > 1 else ""
        raise PyphaseError(f"{src.path / lacking[0] / STEPS_FILE}: holds no steps of run {lacking[0]}{more}; "
                           f"{RERUN_HINT}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
