"""Run an experiment: plan its configs (and this process's share of them under torchrun), pack the
configs that can train as one batched model, skip finished runs, resume unfinished packs from their
checkpoint, and write every run's results atomically. The training itself is `train.run_together`
(packs with the same number of steps side by side on one GPU).

Files under `<out>/<experiment>/` (see `pyphase.schema`)::

    <run_id>/steps.parquet     STEP_COLUMNS            written first
    <run_id>/config.json       the RunConfig           so a rerun can tell a stale run from its own
    <run_id>/summary.parquet   SUMMARY_COLUMNS + extras written last: the run is finished exactly
                                                       when this file exists
    _packs/<pack_id>.ckpt      checkpoint of an unfinished pack, deleted once its runs are written

Every file is written to a temporary name and renamed into place, so a sweep killed at any moment
leaves either a finished run or none: rerunning it skips the finished runs and continues the rest,
and no row is lost or doubled. A rerun must be of the same configs on the same corpus (its sha256):
a finished run of another config or corpus is an error (`is_finished`), a checkpoint of another
one is not continued (`train.PackTrainer.load`: its pack trains again from step 0).

Sharding: configs are independent, so `torchrun --nproc-per-node N -m pyphase train EXP` gives rank r
the configs r, r+N, r+2N, ... of the plan (on GPU `cuda:LOCAL_RANK`). torch.distributed is used only
to learn rank and world size and for one barrier at the end, so that rank 0 reports every run.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

import pyphase
from pyphase.config import MAX_BATCH_WINDOWS, Experiment, RunConfig, config_record, load_experiment
from pyphase.errors import PyphaseError, first_line
from pyphase.schema import STEP_COLUMNS, SUMMARY_COLUMNS, SUMMARY_DTYPES

SUMMARY_FILE = "summary.parquet"
STEPS_FILE = "steps.parquet"
CONFIG_FILE = "config.json"
PACKS_DIR = "_packs"
PLAN_FILE = "plan.json"  # <out>/<experiment>/plan.json: every run_id of the last plan (all shards)
# Packs trained side by side on one GPU by default (`side_by_side`). Measured on the H100:
# phase3a's two packs (K = 5 at B = 128 and 256) in one graph 21.79 ms per pair of steps against
# 23.13 ms one after the other (commit 714316c, results/bench/two_streams_one_graph_h100_714316c.txt);
# the whole phase3a trained in 109.5 s against 116.1 s, with the same numbers bit for bit, and four
# smaller packs side by side (--max-pack 3) in 110.8 s (3caf0d1); phase2_5's four packs (B = 32 to
# 256) side by side in 275.5 s against 300.2 s, same numbers (439e91a; results/bench/README.md).
PACKS_TOGETHER = 4
# Ranks that finish early wait at the final barrier for the slowest one; a phase can take hours.
BARRIER_TIMEOUT = timedelta(hours=48)

# --------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of one sweep."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0  # index of this process's GPU on its host


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"-?[0-9]+", text.strip()):  # int() would take "1_0" and other scripts' digits
        raise PyphaseError(f"environment variable {name}={text!r} is not an integer")
    return int(text)


def shard_from_env() -> Shard:
    """Rank and world size from an initialised torch.distributed, else torchrun's RANK / WORLD_SIZE /
    LOCAL_RANK variables, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
        if world > 1 and not os.environ.get("RANK", "").strip():
            raise PyphaseError(f"WORLD_SIZE={world} but RANK is not set: set RANK (0..{world - 1}) too, or launch "
                               "with torchrun")
    local = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise PyphaseError(f"invalid process placement: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return Shard(rank, world, local)


def _init_process_group(shard: Shard) -> bool:
    """Join torchrun's process group (gloo: only a barrier goes through it). True if we created it."""
    import torch.distributed as dist

    if shard.world == 1 or not dist.is_available() or dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ:
        # Launched by hand with RANK/WORLD_SIZE but no rendezvous: shard without a final barrier.
        return False
    dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world, timeout=BARRIER_TIMEOUT)
    return True


# How often a torchrun worker looks whether its launcher is still there (`stop_with_launcher`).
LAUNCHER_WATCH_S = 0.5


def stop_with_launcher(shard: Shard) -> bool:
    """Under torchrun, end this worker when its launcher dies; True if a watch was started.

    torchrun starts every worker in a session of its own, so a SIGKILL sent to torchrun or to its
    process group (`kill -9`, a scheduler's hard kill, the OOM killer) leaves the workers training.
    On the two-H200 host they finished the sweep while the rerun meant to resume it trained the same
    runs beside them (results/bench/README.md, session 43). A daemon thread notes the parent process
    and, once the worker has been handed to another parent, sends this process SIGTERM: it stops as
    a kill stops it (every file written atomically), and the rerun resumes from the checkpoints."""
    if shard.world == 1 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return False
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(LAUNCHER_WATCH_S)
        print(f"pyphase: rank {shard.rank}: torchrun (pid {parent}) is gone; stopping (the rerun resumes "
              "from the checkpoints)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="pyphase-launcher-watch", daemon=True).start()
    return True


def _barrier(shard: Shard) -> None:
    import torch.distributed as dist

    if shard.world > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


# --------------------------------------------------------------------------- planning and packing
def plan(experiment: Experiment, *, rank: int = 0, world: int = 1) -> list[RunConfig]:
    """This shard's configs, in the experiment's order: configs rank, rank+world, rank+2*world, ...

    Depends only on the experiment (never on what is on disk), so a restarted rank finds the same
    share and its own checkpoints. Every config lands in exactly one shard.
    """
    if world < 1 or not 0 <= rank < world:
        raise PyphaseError(f"invalid shard: rank {rank} of world size {world}")
    return list(experiment.configs[rank::world])


def pack(configs: Sequence[RunConfig], max_pack: int | None = None) -> list[list[RunConfig]]:
    """Group configs by `pack_key()` (first-appearance order, configs in their order), then cut
    each group into packs of at most `max_pack` configs (None: no limit; 1: every config alone)."""
    return _pack(configs, max_pack)


def _pack(configs: Sequence[RunConfig], max_pack: int | None) -> list[list[RunConfig]]:
    # Separate from `pack` because run_experiment's `pack` flag shadows that name there.
    if max_pack is not None and (isinstance(max_pack, bool) or not isinstance(max_pack, int) or max_pack < 1):
        raise PyphaseError(f"--max-pack: must be an integer >= 1, got {max_pack!r}")
    groups: dict[tuple[Any, ...], list[RunConfig]] = {}
    for c in configs:
        groups.setdefault(c.pack_key(), []).append(c)
    packs: list[list[RunConfig]] = []
    for group in groups.values():
        size = len(group) if max_pack is None else max_pack
        packs.extend(group[i : i + size] for i in range(0, len(group), size))
    return packs


def side_by_side(packs: Sequence[list[RunConfig]], most: int) -> list[list[list[RunConfig]]]:
    """Group packs with the same number of steps (first-appearance order) into groups of at most
    `most` that train side by side on one GPU (`train.run_together`); 1: one pack at a time."""
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise PyphaseError(f"--packs-together: must be an integer >= 1, got {most!r}")
    by_steps: dict[int, list[list[RunConfig]]] = {}
    for p in packs:
        by_steps.setdefault(p[0].steps, []).append(p)
    return [same[i : i + most] for same in by_steps.values() for i in range(0, len(same), most)]


def pack_id(configs: Sequence[RunConfig]) -> str:
    """Checkpoint name of a pack: batch size, pack size and a hash of its sorted run_ids."""
    ids = sorted(c.run_id for c in configs)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return f"b{configs[0].batch_size}_k{len(configs)}_{digest}"


# --------------------------------------------------------------------------- what a pack needs
# The Rust batcher's largest output (config.MAX_BATCH_WINDOWS, rust/batcher.rs MAX_ELEMENTS): a pack draws the
# window offsets of all its steps at once, steps x K x batch_size of them.
BATCHER_MAX_ELEMENTS = MAX_BATCH_WINDOWS


def format_bytes(n: float) -> str:
    """'2.25 TiB', '512 B': a byte count for people (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def memory_floor(configs: Sequence[RunConfig], vocab_size: int, train_tokens: int) -> int:
    """Bytes a pack of `configs` certainly needs on its device, whatever the kernels: its K models'
    weights, gradients and optimizer moments in fp32, the per-step telemetry and window offsets, the
    train split as int64, one step's windows and one bf16 copy of every block's input (what the
    backward pass reads at the least). The real need is larger (attention, MLP, logits, workspaces)."""
    from pyphase.model import Shape

    c0, k = configs[0], len(configs)
    shape = Shape.of(c0.model, vocab_size)
    copies = 4 if c0.optimizer == "adamw" else 3  # weights, gradients, first (and second) moment
    b, t = c0.batch_size, shape.block_size
    return (copies * k * shape.n_params * 4 + 5 * c0.steps * k * 4 + c0.steps * k * b * 8 + train_tokens * 8
            + k * b * (t + 1) * 8 + k * b * t * shape.d_model * shape.n_layer * 2)


def device_memory(device: str) -> int | None:
    """Total memory of `device` ('cpu' or 'cuda:N') in bytes; None where it cannot be read."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_pack_fits(configs: Sequence[RunConfig], vocab_size: int, train_tokens: int, device: str) -> None:
    """Before any output is written: a pack the batcher cannot draw windows for, or whose least need
    (`memory_floor`) exceeds the device's whole memory, is a one-line PyphaseError naming its size
    and what to change, not an allocation failure after the plan is written."""
    from pyphase.model import Shape

    c0, k = configs[0], len(configs)
    what = (f"{c0.experiment}: a pack of {k} config{'s' if k > 1 else ''} at batch_size {c0.batch_size:,} "
            f"({c0.steps:,} steps)")
    n = c0.steps * k * c0.batch_size
    if n > BATCHER_MAX_ELEMENTS:
        most = BATCHER_MAX_ELEMENTS // (c0.steps * c0.batch_size)  # >= 1: RunConfig bounds steps x batch_size
        raise PyphaseError(f"{what} draws {n:,} window offsets, more than the batcher's {BATCHER_MAX_ELEMENTS:,}; "
                           f"train at most {most} configs a pack (--max-pack {most})")
    have = device_memory(device)
    need = memory_floor(configs, vocab_size, train_tokens)
    if have is None or need <= have:
        return
    m = c0.model
    p = Shape.of(m, vocab_size).n_params
    one = memory_floor(configs[:1], vocab_size, train_tokens) - train_tokens * 8
    most = (have - train_tokens * 8) // one if one > 0 else 0
    hint = (f"train at most {most} configs a pack (--max-pack {most}), or use a smaller model or batch size"
            if 1 <= most < k else "use a smaller model or batch size")
    raise PyphaseError(f"{what} of {p:,} parameters each (d_model {m.d_model}, n_layer {m.n_layer}, mlp_ratio "
                       f"{m.mlp_ratio}, block_size {m.block_size}) needs at least {format_bytes(need)}, more than "
                       f"{device}'s {format_bytes(have)} in all; {hint}")


_ALLOCATED = re.compile(r"allocate (\d+) bytes|allocate (\d+(?:\.\d+)? ?[KMGTPE]i?B)")


def allocation_failure(e: BaseException) -> str | None:
    """What an allocation failure asked for, in words ("an allocation of 2.25 TiB", or "an allocation"
    where its message names no size), or None when `e` is not one: torch's OutOfMemoryError (CUDA),
    Python's MemoryError (numpy's included) and the CPU allocator's RuntimeError
    ("DefaultCPUAllocator: can't allocate memory"); no other RuntimeError."""
    text = str(e)
    is_oom = (isinstance(e, MemoryError)
              or (type(e).__name__ == "OutOfMemoryError" and type(e).__module__.startswith("torch"))
              or (isinstance(e, RuntimeError) and "DefaultCPUAllocator" in text
                  and ("can't allocate memory" in text or "not enough memory" in text)))
    if not is_oom:
        return None
    m = _ALLOCATED.search(text)
    if m is None:
        return "an allocation"
    return f"an allocation of {format_bytes(int(m.group(1))) if m.group(1) else m.group(2)}"


# --------------------------------------------------------------------------- devices, provenance
def resolve_device(device: str, local_rank: int = 0) -> str:
    """'cpu', 'cuda' (this process's GPU), 'cuda:N', or 'auto' (cuda when available, else cpu)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PyphaseError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu"
            )
        index = local_rank if device == "cuda" else device.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise PyphaseError(f"--device {device}: expected cuda:N with N an integer") from None
        if not 0 <= index < torch.cuda.device_count():
            raise PyphaseError(f"--device {device}: GPU {index} does not exist ({torch.cuda.device_count()} visible)")
        return f"cuda:{index}"
    raise PyphaseError(f"--device {device}: expected cuda, cpu or auto")


def git_commit() -> str:
    """`git rev-parse HEAD` of the checkout pyphase runs from; 'unknown' if it is not a git checkout.
    `PYPHASE_GIT_COMMIT` names it where the code was copied without its .git (e.g. to a GPU box)."""
    if os.environ.get("PYPHASE_GIT_COMMIT"):
        return os.environ["PYPHASE_GIT_COMMIT"]
    repo = Path(pyphase.__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if len(top) != 2 or Path(top[0]).resolve() != repo:
        return "unknown"  # an installed copy inside some other repository
    return top[1]


# --------------------------------------------------------------------------- result files
def run_dir(out: Path, config: RunConfig) -> Path:
    return Path(out) / config.experiment / config.run_id


def is_finished(out: Path, config: RunConfig, corpus: Any = None) -> bool:
    """True if the run's summary exists. Raises, before any training, if that run was trained under a
    different config (same run_id, e.g. other steps or model shape) or, given `corpus` (a
    `data.Corpus`), on another corpus (its summary's corpus_sha256): mixing the two would be silently
    wrong. Also raises if its summary or its steps.parquet is damaged (for the steps only the Parquet
    footer is read: a cheap check that catches a truncated, emptied or overwritten file)."""
    d = run_dir(out, config)
    if not (d / SUMMARY_FILE).exists():
        return False
    try:
        stored = json.loads((d / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        stored = None
    want = config_record(config)
    if stored != want:
        diff = "no readable config.json" if not isinstance(stored, dict) else ", ".join(
            f"{k} {stored.get(k)!r} != {want[k]!r}" for k in want if stored.get(k) != want[k]
        )
        raise PyphaseError(
            f"{d} holds a finished run of a different config ({diff}); use another --out or remove it"
        )
    summary = _read_summary(d / SUMMARY_FILE)  # a damaged summary fails here, naming it, before any training
    _check_steps(d / STEPS_FILE)
    if corpus is not None:
        got = _first(summary, "corpus_sha256")
        if got != corpus.sha256:
            name = _first(summary, "corpus")
            was = (f"{name or 'an unnamed corpus'} (sha256 {got[:12]})" if isinstance(got, str)
                   else "a corpus it does not record")
            raise PyphaseError(f"{d} holds a finished run trained on {was}, not {corpus.name} (sha256 "
                               f"{corpus.sha256[:12]}); use another --out or remove it")
    return True


def _first(frame: pl.DataFrame, column: str) -> Any:
    """The first value of `column` (None if the frame lacks the column or a row)."""
    return frame[column][0] if column in frame.columns and frame.height else None


def _check_steps(path: Path) -> None:
    """Raise if a finished run's steps.parquet is missing or damaged: its footer must be readable and
    name the STEP_COLUMNS (only the footer is read, not the data)."""
    try:
        columns = list(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)}); remove its run folder to train the run "
                           "again") from None
    if columns != STEP_COLUMNS:
        raise PyphaseError(f"{path}: holds the columns {columns}, not the step columns {STEP_COLUMNS}; remove its "
                           "run folder to train the run again")


def _read_summary(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise PyphaseError(f"{path}: unreadable Parquet ({first_line(e)}); remove its run folder to train the run "
                           "again") from None


def atomic_write(path: Path, write: Any) -> None:
    """Write through `write(file)` to a temporary name in the same folder, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def summary_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Summary rows as a DataFrame with the fixed column types (schema order, extras after)."""
    cols = list(SUMMARY_COLUMNS) + [k for k in rows[0] if k not in SUMMARY_COLUMNS]
    return pl.DataFrame(
        [{k: r.get(k) for k in cols} for r in rows],
        schema={k: SUMMARY_DTYPES.get(k, pl.String()) for k in cols},
    )


def write_run(out: Path, config: RunConfig, summary: dict[str, Any], steps: pl.DataFrame) -> None:
    """Write one finished run: steps, config, then the summary (whose presence marks it finished)."""
    if steps.columns != STEP_COLUMNS:
        raise RuntimeError(f"trainer returned step columns {steps.columns}, expected {STEP_COLUMNS}")
    ids = steps["run_id"].unique().to_list()
    if ids != [config.run_id]:
        raise RuntimeError(f"trainer returned steps of runs {ids} for {config.run_id}")
    missing = [k for k in SUMMARY_COLUMNS if k not in summary]
    if missing:
        raise RuntimeError(f"summary of {config.run_id} lacks columns {missing}")
    d = run_dir(out, config)
    d.mkdir(parents=True, exist_ok=True)
    for leftover in d.glob(".*.tmp.*"):  # from a sweep killed mid-write
        leftover.unlink(missing_ok=True)
    atomic_write(d / STEPS_FILE, steps.write_parquet)
    record = json.dumps(config_record(config), indent=2).encode()
    atomic_write(d / CONFIG_FILE, lambda f: f.write(record))
    atomic_write(d / SUMMARY_FILE, summary_frame([summary]).write_parquet)


def read_summaries(out: Path, configs: Sequence[RunConfig]) -> pl.DataFrame:
    """Summary rows of the finished runs among `configs`, in their order (empty frame if none)."""
    frames = [_read_summary(run_dir(out, c) / SUMMARY_FILE) for c in configs
              if (run_dir(out, c) / SUMMARY_FILE).exists()]
    if not frames:
        return pl.DataFrame(schema={k: SUMMARY_DTYPES[k] for k in SUMMARY_COLUMNS})
    return pl.concat(frames, how="diagonal_relaxed")


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    """What `run_experiment` did: the summary of every finished run of the experiment's plan, and
    which runs this process trained now or found finished."""

    experiment: Experiment
    summary: pl.DataFrame
    out_dir: Path  # <out>/<experiment>
    trained: list[str]
    skipped: list[str]
    device: str
    shard: Shard
    # whether the shards met at a final barrier (torchrun's process group): then rank 0's summary holds
    # every shard's runs; shards launched by hand with RANK/WORLD_SIZE each report what is finished so far
    coordinated: bool = False


def run_experiment(
    name_or_path: str | Path,
    *,
    device: str = "cpu",
    data: str | Path | None = None,
    out: Path = Path("runs"),
    seeds: int | None = None,
    pack: bool = True,
    max_pack: int | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    packs_together: int | None = None,
) -> SweepResult:
    """Run every config of an experiment that is not finished yet (this shard's share under torchrun)
    and write its results; see the module docstring for files, resuming and sharding.

    `pack=False` trains every config alone (same as `max_pack=1`). `checkpoint_every` overrides the
    experiment's `train.checkpoint_every`. Up to `packs_together` packs with the same number of
    steps train side by side (`side_by_side`), on CUDA in one CUDA graph; None: PACKS_TOGETHER on
    CUDA, 1 (one after the other, nothing to gain) on the CPU. Returns the summary of all finished
    runs of the plan.
    """
    exp = load_experiment(name_or_path, seeds=seeds)  # first: a bad file fails before torch loads
    # numpy before torch, in Python: torch's C extension imports numpy itself and drops whatever that
    # import raises, numpy being optional to it; a Ctrl-C during it was dropped too, and the sweep ran
    # to its end with exit 0 (or failed later on a half-imported numpy: "no attribute 'void'")
    import numpy  # noqa: F401
    every = exp.checkpoint_every if checkpoint_every is None else checkpoint_every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise PyphaseError(f"checkpoint_every: must be an integer >= 1, got {every!r}")
    packs_max = 1 if not pack else max_pack
    _pack([], packs_max)  # validate --max-pack before any work
    side_by_side([], 1 if packs_together is None else packs_together)  # and --packs-together
    shard = shard_from_env()
    stop_with_launcher(shard)
    dev = resolve_device(device, shard.local_rank)
    from tqdm.auto import tqdm

    from pyphase.data import load_corpus

    # before any training or output folder: every config's windows fit in both splits
    corpus = load_corpus(data, block_size=max((c.model.block_size for c in exp.configs), default=None))
    # and every pack of this shard fits the batcher and, at the least, the device's memory
    for group in _pack(plan(exp, rank=shard.rank, world=shard.world), packs_max):
        check_pack_fits(group, corpus.tokenizer.vocab_size, len(corpus.train), dev)
    out = Path(out)
    exp_dir = out / exp.name
    from pyphase.results import missing_folders, remove_empty_folders

    made = missing_folders(exp_dir)
    try:  # before any training: a folder that cannot be made would lose the first pack's work
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PyphaseError(f"--out {out}: cannot create {exp_dir}: {e.strerror or e}") from None
    # every run of the plan, this shard's and the others': what `results list` and `export` count as
    # runs, so that a sweep whose other shards (or later packs) have not run yet is not called complete
    plan_ids = json.dumps({"experiment": exp.name, "run_ids": [c.run_id for c in exp.configs]}, indent=1).encode()
    atomic_write(exp_dir / PLAN_FILE, lambda f: f.write(plan_ids))
    created_group = _init_process_group(shard)
    try:
        if dev.startswith("cuda"):
            import torch

            torch.cuda.set_device(int(dev.split(":")[1]))
        mine = plan(exp, rank=shard.rank, world=shard.world)
        finished = {c.run_id for c in mine if is_finished(out, c, corpus)}
        skipped = [c.run_id for c in mine if c.run_id in finished]
        todo = [c for c in mine if c.run_id not in finished]
        commit = git_commit()
        trained: list[str] = []
        bar = tqdm(total=len(mine), initial=len(skipped), unit="run", file=sys.stderr, disable=not progress,
                   desc=exp.name if shard.world == 1 else f"{exp.name} [{shard.rank}/{shard.world}]")
        if packs_together is None:
            packs_together = PACKS_TOGETHER if dev.startswith("cuda") else 1
        for packs in side_by_side(_pack(todo, packs_max), packs_together):
            ckpts = [exp_dir / PACKS_DIR / f"{pack_id(group)}.ckpt" for group in packs]
            try:
                results = _train_side_by_side(packs, ckpts, corpus, dev, every, progress)
            except Exception as e:  # an allocation failure is one line naming the pack; anything else as it was
                asked = allocation_failure(e)
                if asked is None:
                    raise
                raise PyphaseError(_out_of_memory(packs, corpus.tokenizer.vocab_size, dev, asked)) from None
            for group, ckpt, (outputs, n_together) in zip(packs, ckpts, results, strict=True):
                for cfg, res in zip(group, outputs, strict=True):
                    if res.config != cfg:
                        raise RuntimeError(f"training returned {res.config.run_id} where {cfg.run_id} was expected")
                    row = dict(res.summary)
                    # Identity columns come from the config itself, provenance from this sweep.
                    row.update(batch_size=cfg.batch_size, lr=cfg.lr, gradient_clip=cfg.gradient_clip,
                               experiment=exp.name, run_id=cfg.run_id, seed=cfg.seed, optimizer=cfg.optimizer,
                               git_commit=commit, corpus=corpus.name, corpus_sha256=corpus.sha256,
                               corpus_unigram_entropy=corpus.unigram_entropy,
                               corpus_bigram_entropy=corpus.bigram_entropy,
                               corpus_vocab_size=corpus.tokenizer.vocab_size, packs_together=n_together)
                    write_run(out, cfg, row, res.steps)
                    trained.append(cfg.run_id)
                # Only now, with every run of the pack written, is the checkpoint no longer needed.
                ckpt.unlink(missing_ok=True)
                bar.update(len(group))
        bar.close()
        _barrier(shard)
        if shard.rank == 0:
            _remove_stale_checkpoints(out, exp)
    except BaseException:
        # a sweep that failed before writing anything but the plan leaves no folder it made behind
        if made and shard.world == 1 and _holds_only_the_plan(exp_dir):
            (exp_dir / PLAN_FILE).unlink(missing_ok=True)
            try:
                (exp_dir / PACKS_DIR).rmdir()
            except OSError:
                pass  # never made, or not empty
            remove_empty_folders(made)
        raise
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    return SweepResult(experiment=exp, summary=read_summaries(out, exp.configs), out_dir=exp_dir,
                       trained=trained, skipped=skipped, device=dev, shard=shard,
                       coordinated=shard.world > 1 and "MASTER_ADDR" in os.environ)


def _holds_only_the_plan(exp_dir: Path) -> bool:
    """True when `exp_dir` holds plan.json and nothing else (at most an empty checkpoint folder)."""
    try:
        names = {p.name for p in exp_dir.iterdir()}
        packs = exp_dir / PACKS_DIR
        return names <= {PLAN_FILE, PACKS_DIR} and not (packs.is_dir() and any(packs.iterdir()))
    except OSError:
        return False


def _out_of_memory(packs: list[list[RunConfig]], vocab_size: int, device: str, asked: str) -> str:
    """The one line of an allocation failure while building or training `packs`: how much was asked,
    the pack's size, and what to change."""
    from pyphase.model import Shape

    c0 = packs[0][0]
    k = sum(len(p) for p in packs)
    what = (f"{len(packs)} packs side by side ({k} configs)" if len(packs) > 1 else
            f"a pack of {k} config{'s' if k > 1 else ''}")
    p = Shape.of(c0.model, vocab_size).n_params
    hint = ("use --max-pack 1 (one config a pack), or a smaller model or batch size" if k > 1 else
            "use a smaller model or batch size")
    return (f"out of memory on {device} while building or training {what} at batch_size {c0.batch_size:,} "
            f"({p:,} parameters a model, block_size {c0.model.block_size}): {asked} failed; {hint}")


def _train_side_by_side(packs: list[list[RunConfig]], ckpts: list[Path], corpus: Any, dev: str, every: int,
                        progress: bool) -> list[tuple[list[Any], int]]:
    """Train packs side by side (`train.run_together`); where they do not fit in the GPU's memory
    together, one at a time instead, each resuming from any checkpoint the attempt wrote. Returns
    each pack's outputs and how many packs trained side by side with it (itself included)."""
    import torch

    from pyphase.train import PackTrainer, run_together

    trainers: list[PackTrainer] = []
    try:
        trainers = [PackTrainer(group, corpus, dev) for group in packs]
        return [(o, len(packs)) for o in run_together(trainers, ckpts, checkpoint_every=every, progress=progress)]
    except torch.cuda.OutOfMemoryError:
        if len(packs) == 1:
            raise
    # here, outside the handler (whose traceback held them), free the failed attempt's tensors
    del trainers
    gc.collect()
    torch.cuda.empty_cache()
    print(f"warning: {len(packs)} packs do not fit side by side in {dev}'s memory; training them one at a time "
          "(--packs-together 1 does so from the start)", file=sys.stderr)
    return [_train_side_by_side([p], [c], corpus, dev, every, progress)[0] for p, c in zip(packs, ckpts)]


def _checkpoint_run_ids(path: Path) -> list[str] | None:
    """The run_ids a pack's checkpoint holds; None if it cannot be read."""
    import torch

    from pyphase.train import CORRUPT_CHECKPOINT

    try:
        ids = torch.load(path, map_location="cpu", weights_only=False)["run_ids"]
    except CORRUPT_CHECKPOINT:  # damaged: it can never be resumed (an OSError is raised, the file kept)
        return None
    return [str(i) for i in ids] if isinstance(ids, list) else None


def _remove_stale_checkpoints(out: Path, exp: Experiment) -> None:
    """Once every run of the plan is finished, delete the leftover checkpoints that can never be
    resumed: those whose runs are all finished (e.g. after a crash between two runs' writes), and
    unreadable ones. A checkpoint holding an unfinished run of another plan (one trained with
    another --seeds) is kept: running that plan again resumes it."""
    packs_dir = out / exp.name / PACKS_DIR
    if not packs_dir.is_dir() or not all((run_dir(out, c) / SUMMARY_FILE).exists() for c in exp.configs):
        return
    for f in packs_dir.iterdir():
        if f.name.endswith(".ckpt.tmp"):
            f.unlink(missing_ok=True)
        elif f.suffix == ".ckpt":
            ids = _checkpoint_run_ids(f)
            if ids is None or all((out / exp.name / i / SUMMARY_FILE).exists() for i in ids):
                f.unlink(missing_ok=True)
    try:
        packs_dir.rmdir()
    except OSError:
        pass  # something else lives there; leave it
