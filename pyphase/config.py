"""Experiment configuration: the TOML files under `experiments/` turned into validated, frozen
dataclasses. This module owns every default of a training run (model shape, optimizer settings,
evaluation cadence) and every check on them; the trainer and the sweep read `RunConfig` and never
re-check or re-default anything.

TOML layout (see `experiments/*.toml`)::

    name = "phase3a"
    description = "..."
    [model]  d_model, n_layer, n_head, mlp_ratio, block_size
    [optim]  optimizer ("adamw" | "sgd"), betas, eps, weight_decay, momentum, warmup_steps,
             schedule ("constant" | "cosine")
    [train]  steps, eval_interval, eval_windows, seeds (a list of seeds, or n for 0..n-1),
             checkpoint_every
    [grid]   batch_size, lr, gradient_clip: lists (or single values), crossed
    or
    [[runs]] batch_size, lr, gradient_clip: one entry per explicit combination (lists allowed,
             crossed within the entry)

Every section but the configs themselves is optional; a missing key takes the default below.
TOML has no null, so clipping off is the string "none". Configs are crossed with the seeds.
Any problem is a `PyphaseError` whose one line names the file, the key and what is wrong.
"""

from __future__ import annotations

import itertools
import math
import numbers
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyphase
from pyphase.errors import PyphaseError, shown

MAX_STEPS = 100_000_000  # optimizer steps a run may ask for (see RunConfig)
# Largest batch size (windows a step). Far past any sweep (seed 000's largest is 256); a larger one
# only reached the batcher as an integer it cannot hold (OverflowError past 2^64) or an allocation.
MAX_BATCH_SIZE = 1 << 20
# Most windows of one run's whole training, steps x batch_size: every step's window offsets are drawn
# at once by the Rust batcher, whose largest output holds 2^30 elements (rust/batcher.rs MAX_ELEMENTS).
MAX_BATCH_WINDOWS = 1 << 30
# Largest value of each model shape field, far past any NanoTransformer here (seed 000: 128 / 4 / 4 / 4
# / 256). Larger values went on as sizes torch cannot hold (an OverflowError or TypeError from
# torch.empty past 2^63) or loops that never end (10^20 layers); whether a shape within them fits in
# memory is `sweep.check_pack_fits`'s question, asked before any output is written.
MODEL_MAXIMA = {"d_model": 1 << 16, "n_layer": 1024, "n_head": 1 << 16, "mlp_ratio": 64, "block_size": 1 << 20}
# Most validation windows (a split holds far fewer; the trainer evaluates on those it has).
MAX_EVAL_WINDOWS = 1 << 30
# The trainer keeps LR, clip threshold, weight decay and eps in float32 tensors: a number past
# FLOAT32_MAX becomes inf there, and a positive one below FLOAT32_TINY (float32's smallest normal
# number) a denormal or 0 (an eps of 0 divides 0 by 0 where a second moment is 0).
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine")
CLIP_OFF = "none"  # how a TOML file says "no clipping" (TOML has no null)


def experiments_dir() -> Path:
    """The folder holding the experiments shipped with pyphase (`<repo>/experiments`)."""
    return Path(pyphase.__file__).resolve().parents[1] / "experiments"


def _fmt_num(x: float) -> str:
    """Shortest round-trip text of a float, without a trailing '.0' (1.0 -> '1', 0.05 -> '0.05').

    Round-trip (repr) rather than a fixed precision so two different values never share a run_id.
    """
    text = repr(float(x))
    return text.removesuffix(".0")


@dataclass(frozen=True)
class ModelShape:
    """Shape of the NanoTransformer (seed 000: d_model 128, 4 layers, 4 heads, MLP 4x, context 256)."""

    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    mlp_ratio: int = 4
    block_size: int = 256

    def __post_init__(self) -> None:
        for f in fields(self):
            check_int(getattr(self, f.name), f"model.{f.name}", minimum=1, maximum=MODEL_MAXIMA[f.name])
        if self.d_model % self.n_head != 0:
            raise PyphaseError(
                f"model.d_model: {self.d_model} is not divisible by model.n_head = {self.n_head}"
            )


@dataclass(frozen=True)
class RunConfig:
    """One training run: one model, one optimizer setting, one seed.

    Defaults are torch.optim.AdamW's (seed 000 names AdamW but states no betas, eps or weight decay).
    `gradient_clip` None means clipping off.
    """

    experiment: str
    batch_size: int
    lr: float
    gradient_clip: float | None
    seed: int
    steps: int
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    warmup_steps: int = 0
    schedule: str = "constant"
    eval_interval: int = 500
    eval_windows: int = 128  # the fixed validation set: the first eval_windows windows of the valid split
    model: ModelShape = field(default_factory=ModelShape)

    def __post_init__(self) -> None:
        check_int(self.batch_size, "batch_size", minimum=1, maximum=MAX_BATCH_SIZE)
        check_positive_float(self.lr, "lr")
        if self.gradient_clip is not None:
            check_positive_float(self.gradient_clip, "gradient_clip")
        check_int(self.seed, "seed", minimum=0, maximum=MAX_SEED)
        # the trainer holds every step's telemetry and batch offsets on the device: 10^8 steps is far
        # past any sweep and still allocatable; a larger count failed later with numpy's "array is too big"
        check_int(self.steps, "steps", minimum=1, maximum=MAX_STEPS)
        if self.steps * self.batch_size > MAX_BATCH_WINDOWS:
            raise PyphaseError(f"steps: {self.steps:,} steps x batch_size {self.batch_size:,} = "
                               f"{self.steps * self.batch_size:,} training windows, at most {MAX_BATCH_WINDOWS:,} "
                               "(the batcher draws every step's windows at once)")
        _check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        _check_betas(self.betas, "betas")
        check_positive_float(self.eps, "eps")
        _check_float(self.weight_decay, "weight_decay", lo=0.0)
        _check_float(self.momentum, "momentum", lo=0.0, hi_open=1.0)
        check_int(self.warmup_steps, "warmup_steps", minimum=0, maximum=MAX_STEPS)
        if self.warmup_steps > self.steps:
            raise PyphaseError(f"warmup_steps: {self.warmup_steps} exceeds steps = {self.steps}")
        _check_choice(self.schedule, "schedule", SCHEDULES)
        check_int(self.eval_interval, "eval_interval", minimum=1, maximum=MAX_STEPS)
        check_int(self.eval_windows, "eval_windows", minimum=1, maximum=MAX_EVAL_WINDOWS)
        if not isinstance(self.model, ModelShape):
            raise PyphaseError(f"model: expected a ModelShape, got {type(self.model).__name__}")

    @property
    def run_id(self) -> str:
        """Stable, filesystem-safe name, unique within an experiment (the grid axes plus the seed),
        e.g. 'adamw_b128_lr0.05_clip1_s0' or 'adamw_b32_lr0.001_clipnone_s0'."""
        clip = "none" if self.gradient_clip is None else _fmt_num(self.gradient_clip)
        return f"{self.optimizer}_b{self.batch_size}_lr{_fmt_num(self.lr)}_clip{clip}_s{self.seed}"

    def pack_key(self) -> tuple[Any, ...]:
        """Configs with equal keys may train together as one packed (K-stacked) model: everything
        but LR, clip threshold, weight decay and seed, which the packed model keeps per config."""
        return (
            self.experiment,
            self.model,
            self.batch_size,
            self.steps,
            self.optimizer,
            self.betas,
            self.eps,
            self.momentum,
            self.schedule,
            self.warmup_steps,
            self.eval_interval,
            self.eval_windows,
        )


@dataclass(frozen=True)
class Experiment:
    """A named set of run configs (grid or explicit runs, crossed with seeds), as read from a TOML file."""

    name: str
    description: str
    configs: list[RunConfig]
    path: Path
    checkpoint_every: int = 1000  # steps between pack checkpoints; not part of a run's identity
    settings: dict[str, Any] = field(default_factory=dict)  # the raw parsed TOML


# --------------------------------------------------------------------------- value checks
# Each check raises PyphaseError("<key>: <problem>"); the loader prefixes the file name.


# Most seeds one config may repeat (as `pyphase predict --seeds`), and the largest seed: summaries
# store seeds as Int64, and the batcher and torch's generators take them as 64-bit integers.
MAX_SEEDS = 10_000
MAX_SEED = 2**63 - 1


def check_int(value: Any, key: str, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PyphaseError(f"{key}: expected an integer, got {value!r}")
    if value < minimum:
        raise PyphaseError(f"{key}: must be >= {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise PyphaseError(f"{key}: must be <= {maximum:,}, got {shown(value)}")


def float_problem(value: Any, *, lo: float, hi_open: float | None = None) -> str | None:
    """What is wrong with `value` as a finite number >= lo (and < hi_open where given), in the words
    of a config error after its key; None when it is fine. Numbers are real numbers (numpy's too),
    never bools. Shared by the config's checks and predict's optimizer settings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's bool is no numbers.Real
        return f"expected a number, got {value!r}"
    if not is_finite(value) or value < lo or (hi_open is not None and value >= hi_open):
        bound = f">= {lo}" + ("" if hi_open is None else f" and < {hi_open}")
        return f"must be finite and {bound}, got {shown(value)}"
    if abs(value) > FLOAT32_MAX:
        return f"must be <= {FLOAT32_MAX:.7g} (float32's largest number, as the trainer holds it), got {value:g}"
    return None


def is_finite(value: numbers.Real) -> bool:
    """math.isfinite, False for an integer too large for a float (where math.isfinite raises)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_float(value: Any, key: str, *, lo: float, hi_open: float | None = None) -> None:
    problem = float_problem(value, lo=lo, hi_open=hi_open)
    if problem is not None:
        raise PyphaseError(f"{key}: {problem}")


def check_positive_float(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PyphaseError(f"{key}: expected a number, got {value!r}")
    if not is_finite(value) or value <= 0:
        raise PyphaseError(f"{key}: must be finite and > 0, got {shown(value)}")
    if not FLOAT32_TINY <= value <= FLOAT32_MAX:  # the trainer holds it in float32: inf or 0 there
        raise PyphaseError(f"{key}: must be in [{FLOAT32_TINY:.7g}, {FLOAT32_MAX:.7g}] (float32's normal numbers, as "
                           f"the trainer holds it), got {value:g}")


def _check_choice(value: Any, key: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PyphaseError(f"{key}: unknown value {value!r} (expected one of: {', '.join(choices)})")


def _check_betas(value: Any, key: str) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise PyphaseError(f"{key}: expected two numbers [beta1, beta2], got {value!r}")
    for i, b in enumerate(value):
        _check_float(b, f"{key}[{i}]", lo=0.0, hi_open=1.0)


# --------------------------------------------------------------------------- TOML loading
_TOP_KEYS = {"name", "description", "model", "optim", "train", "grid", "runs"}
_MODEL_KEYS = {f.name for f in fields(ModelShape)}
_OPTIM_KEYS = {"optimizer", "betas", "eps", "weight_decay", "momentum", "warmup_steps", "schedule"}
_UNUSED_BY = {"adamw": ("momentum",), "sgd": ("betas", "eps")}  # [optim] keys an optimizer never reads
_TRAIN_KEYS = {"steps", "eval_interval", "eval_windows", "seeds", "checkpoint_every"}
_AXES = ("batch_size", "lr", "gradient_clip")


def known_experiments() -> list[str]:
    """Names of the experiments shipped under `experiments/`."""
    return sorted(p.stem for p in experiments_dir().glob("*.toml"))


def resolve_experiment_path(name_or_path: str | Path) -> Path:
    """An existing file path as given, else `<repo>/experiments/<name>.toml`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = experiments_dir() / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    known = ", ".join(known_experiments()) or "(none)"
    raise PyphaseError(f"unknown experiment {str(name_or_path)!r}: not a file, and not one of: {known}")


def _section(raw: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    sec = raw.get(name, {})
    if not isinstance(sec, dict):
        raise PyphaseError(f"{name}: expected a table [{name}], got {sec!r}")
    for key in sec:
        if key not in allowed:
            raise PyphaseError(f"unknown key '{name}.{key}' (known: {', '.join(sorted(allowed))})")
    return sec


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _clip_value(value: Any, key: str) -> float | None:
    if isinstance(value, str):
        if value.lower() == CLIP_OFF:
            return None
        raise PyphaseError(f"{key}: unknown value {value!r} (a positive number, or \"none\" for no clipping)")
    check_positive_float(value, key)
    return float(value)


def _axis_values(entry: dict[str, Any], where: str) -> list[tuple[int, float, float | None]]:
    """Cartesian product of one grid / run entry's batch_size x lr x gradient_clip values, checked."""
    for key in entry:
        if key not in _AXES:
            raise PyphaseError(f"unknown key '{where}.{key}' (known: {', '.join(_AXES)})")
    for key in _AXES:
        if key not in entry:
            raise PyphaseError(f"{where}.{key}: missing (every config needs batch_size, lr and gradient_clip)")
    values: dict[str, list[Any]] = {}
    for key in _AXES:
        vals = _as_list(entry[key])
        if not vals:
            raise PyphaseError(f"{where}.{key}: empty list, the grid would have no configs")
        checked: list[Any] = []
        for v in vals:
            if key == "batch_size":
                check_int(v, f"{where}.{key}", minimum=1, maximum=MAX_BATCH_SIZE)
                checked.append(v)
            elif key == "lr":
                check_positive_float(v, f"{where}.{key}")
                checked.append(float(v))
            else:
                checked.append(_clip_value(v, f"{where}.{key}"))
        values[key] = checked
    return list(itertools.product(values["batch_size"], values["lr"], values["gradient_clip"]))


def _seeds(value: Any) -> list[int]:
    if isinstance(value, list):
        if not value:
            raise PyphaseError("train.seeds: empty list")
        if len(value) > MAX_SEEDS:
            raise PyphaseError(f"train.seeds: at most {MAX_SEEDS:,} seeds, got {len(value):,}")
        for s in value:
            check_int(s, "train.seeds", minimum=0, maximum=MAX_SEED)
        if len(set(value)) != len(value):
            raise PyphaseError(f"train.seeds: repeated seed in {value}")
        return list(value)
    check_int(value, "train.seeds", minimum=1, maximum=MAX_SEEDS)
    return list(range(value))


def _build(raw: dict[str, Any], path: Path, seeds_override: int | None) -> Experiment:
    for key in raw:
        if key not in _TOP_KEYS:
            raise PyphaseError(f"unknown key '{key}' (known: {', '.join(sorted(_TOP_KEYS))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise PyphaseError(f"name: expected a non-empty name of letters, digits, '_' or '-', got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise PyphaseError(f"description: expected a string, got {description!r}")

    model_sec = _section(raw, "model", _MODEL_KEYS)
    optim_sec = _section(raw, "optim", _OPTIM_KEYS)
    train_sec = _section(raw, "train", _TRAIN_KEYS)

    # Errors from the dataclass checks carry the bare field name; prefix the TOML section.
    try:
        model = ModelShape(**model_sec)
    except TypeError as e:  # pragma: no cover - unknown keys are rejected above
        raise PyphaseError(f"model: {e}") from None

    if "steps" not in train_sec:
        raise PyphaseError("train.steps: missing (how many optimizer steps each run takes)")
    seeds = _seeds(train_sec.get("seeds", [0]))
    if seeds_override is not None:
        check_int(seeds_override, "--seeds", minimum=1, maximum=MAX_SEEDS)
        seeds = list(range(seeds_override))
    checkpoint_every = train_sec.get("checkpoint_every", 1000)
    check_int(checkpoint_every, "train.checkpoint_every", minimum=1, maximum=MAX_STEPS)

    has_grid, has_runs = "grid" in raw, "runs" in raw
    if has_grid == has_runs:
        raise PyphaseError("expected exactly one of [grid] or [[runs]] to list the configs")
    combos: list[tuple[int, float, float | None]] = []
    if has_grid:
        if not isinstance(raw["grid"], dict):
            raise PyphaseError(f"grid: expected a table [grid], got {raw['grid']!r}")
        combos = _axis_values(raw["grid"], "grid")
    else:
        runs = raw["runs"]
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise PyphaseError("runs: expected an array of tables [[runs]]")
        if not runs:
            raise PyphaseError("runs: empty, the experiment would have no configs")
        for i, entry in enumerate(runs):
            combos.extend(_axis_values(entry, f"runs[{i}]"))
    seen: set[tuple[int, float, float | None]] = set()
    for combo in combos:
        if combo in seen:
            b, lr, clip = combo
            raise PyphaseError(f"grid: config batch_size={b}, lr={lr}, gradient_clip={clip} is listed twice")
        seen.add(combo)

    optim = dict(optim_sec)
    # a setting the chosen optimizer never reads would be recorded in every run's config.json as if
    # it had shaped the run (sgd with betas = [0.1, 0.2] trained exactly as without them)
    opt_name = optim.get("optimizer", RunConfig.optimizer)
    for key in _UNUSED_BY.get(opt_name, ()):
        if key in optim_sec:
            raise PyphaseError(f"optim.{key}: has no effect with optimizer {opt_name}; remove it")
    if "betas" in optim:
        _check_betas(optim["betas"], "optim.betas")
        optim["betas"] = tuple(float(b) for b in optim["betas"])
    for key in ("eps", "weight_decay", "momentum"):
        if key in optim and isinstance(optim[key], int) and not isinstance(optim[key], bool):
            optim[key] = float(optim[key])
    train_kw = {k: v for k, v in train_sec.items() if k in ("steps", "eval_interval", "eval_windows")}

    configs: list[RunConfig] = []
    for b, lr, clip in combos:
        for seed in seeds:
            try:
                configs.append(
                    RunConfig(experiment=name, batch_size=b, lr=lr, gradient_clip=clip, seed=seed,
                              model=model, **optim, **train_kw)
                )
            except PyphaseError as e:
                key = str(e).split(":", 1)[0]
                sec = "optim" if key.split("[")[0] in _OPTIM_KEYS else "train"
                raise PyphaseError(f"{sec}.{e}") from None
    return Experiment(name=name, description=description, configs=configs, path=path,
                      checkpoint_every=checkpoint_every, settings=raw)


def config_record(config: RunConfig) -> dict[str, Any]:
    """The RunConfig as JSON-ready data (what a run's config.json and a pack's checkpoint hold of it)."""
    rec = asdict(config)
    rec["betas"] = list(config.betas)
    return rec


def load_experiment(name_or_path: str | Path, *, seeds: int | None = None) -> Experiment:
    """Read and validate an experiment: a TOML path, or the name of one under `experiments/`.

    `seeds` = N replaces the file's seeds with 0..N-1. Raises PyphaseError (one line: file, key,
    problem) on any unknown key, wrong type or out-of-range value.
    """
    path = resolve_experiment_path(name_or_path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise PyphaseError(f"{path}: not valid TOML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise PyphaseError(f"{path}: not valid TOML: not UTF-8 (invalid byte at offset {e.start})") from None
    except OSError as e:
        raise PyphaseError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return _build(raw, path, seeds)
    except PyphaseError as e:
        raise PyphaseError(f"{path}: {e}") from None
