"""Experiment TOMLs -> RunConfigs: grid expansion, seeds, run ids, and every validation error path
(one line naming the file, the key and the problem; exit code 2 through the CLI)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyphase.config import ModelShape, RunConfig, known_experiments, load_experiment
from pyphase.errors import PyphaseError

BASE = """\
name = "t"
description = "test"
[model]
d_model = 32
n_layer = 1
n_head = 2
block_size = 16
[optim]
optimizer = "adamw"
[train]
steps = 10
"""
GRID = """\
[grid]
batch_size = [4, 8]
lr = [0.001, 0.01]
gradient_clip = [1.0, "none"]
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# --------------------------------------------------------------------------- shipped experiments
@pytest.mark.parametrize("name,n", [("phase2_5", 20), ("phase3a", 10), ("phase3b", 8)])
def test_phase_grids_expand_to_the_issue_counts(name, n):
    exp = load_experiment(name)
    assert len(exp.configs) == n
    assert {c.seed for c in exp.configs} == {0}
    assert all(c.optimizer == "adamw" for c in exp.configs)
    assert all(c.model == ModelShape() for c in exp.configs)  # the seed's d128 / 4 layers / 4 heads / 256


def test_phase2_5_is_the_seed_grid():
    exp = load_experiment("phase2_5")
    assert sorted({c.batch_size for c in exp.configs}) == [32, 64, 128, 256]
    lrs = sorted({c.lr for c in exp.configs})
    # half-decade grid: it holds the optima the seed names (0.001, 0.003, 0.01)
    assert lrs == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    assert {c.gradient_clip for c in exp.configs} == {1.0}
    assert {c.steps for c in exp.configs} == {10_000}


def test_phase3a_is_the_seed_grid():
    exp = load_experiment("phase3a")
    assert {(c.batch_size, c.lr) for c in exp.configs} == {
        (b, lr) for b in (128, 256) for lr in (0.01, 0.02, 0.03, 0.05, 0.1)
    }
    assert {c.gradient_clip for c in exp.configs} == {1.0}
    assert {c.steps for c in exp.configs} == {5000}


def test_phase3b_pairs_each_batch_with_its_own_lr_across_clips():
    exp = load_experiment("phase3b")
    got = {(c.batch_size, c.lr, c.gradient_clip) for c in exp.configs}
    want = {(b, lr, clip) for b, lr in ((32, 0.001), (256, 0.05)) for clip in (None, 10.0, 1.0, 0.1)}
    assert got == want
    assert {c.steps for c in exp.configs} == {5000}


def test_smoke_is_tiny():
    exp = load_experiment("smoke")
    assert len(exp.configs) == 12
    assert {c.gradient_clip for c in exp.configs} == {1.0, None}
    assert all(c.steps <= 50 and c.model.d_model <= 32 and c.model.block_size <= 32 for c in exp.configs)
    assert exp.checkpoint_every < exp.configs[0].steps  # so an interrupted smoke sweep has a checkpoint


def test_known_experiments_lists_the_shipped_files():
    assert {"phase2_5", "phase3a", "phase3b", "smoke"} <= set(known_experiments())


@pytest.mark.parametrize("name", ["phase2_5", "phase3a", "phase3b", "smoke"])
def test_run_ids_are_unique_and_filesystem_safe(name):
    exp = load_experiment(name, seeds=3)
    ids = [c.run_id for c in exp.configs]
    assert len(ids) == len(set(ids)) == 3 * len(load_experiment(name).configs)
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.-+") for i in ids)


def test_run_id_format():
    c = RunConfig(experiment="x", batch_size=128, lr=0.05, gradient_clip=1.0, seed=0, steps=1)
    assert c.run_id == "adamw_b128_lr0.05_clip1_s0"
    off = RunConfig(experiment="x", batch_size=32, lr=2.15e-4, gradient_clip=None, seed=3, steps=1, optimizer="sgd")
    assert off.run_id == "sgd_b32_lr0.000215_clipnone_s3"
    # values that differ beyond a few digits still get different ids
    a = RunConfig(experiment="x", batch_size=8, lr=0.1, gradient_clip=0.1, seed=0, steps=1)
    b = RunConfig(experiment="x", batch_size=8, lr=0.1000001, gradient_clip=0.1, seed=0, steps=1)
    assert a.run_id != b.run_id


def test_pack_key_ignores_lr_clip_weight_decay_seed_only():
    base = RunConfig(experiment="x", batch_size=8, lr=0.1, gradient_clip=1.0, seed=0, steps=10)
    from dataclasses import replace

    for change in ({"lr": 0.2}, {"gradient_clip": None}, {"weight_decay": 0.0}, {"seed": 5}):
        assert replace(base, **change).pack_key() == base.pack_key()
    for change in ({"batch_size": 16}, {"steps": 11}, {"optimizer": "sgd"}, {"betas": (0.8, 0.99)},
                   {"eps": 1e-6}, {"momentum": 0.5}, {"schedule": "cosine"}, {"warmup_steps": 2},
                   {"eval_interval": 3}, {"eval_windows": 4}, {"model": ModelShape(d_model=64)}):
        assert replace(base, **change).pack_key() != base.pack_key(), change


# --------------------------------------------------------------------------- expansion and seeds
def test_grid_is_the_cartesian_product_crossed_with_seeds(tmp_path):
    p = write(tmp_path, BASE.replace("steps = 10", "steps = 10\nseeds = [0, 7]") + GRID)
    exp = load_experiment(p)
    assert len(exp.configs) == 2 * 2 * 2 * 2
    assert {(c.batch_size, c.lr, c.gradient_clip, c.seed) for c in exp.configs} == {
        (b, lr, clip, s) for b in (4, 8) for lr in (0.001, 0.01) for clip in (1.0, None) for s in (0, 7)
    }
    # deterministic order: file order of the axes, seeds innermost
    assert [c.run_id for c in exp.configs] == [c.run_id for c in load_experiment(p).configs]
    assert [c.seed for c in exp.configs[:2]] == [0, 7]


def test_seeds_integer_means_zero_to_n_minus_one(tmp_path):
    p = write(tmp_path, BASE.replace("steps = 10", "steps = 10\nseeds = 3") + GRID)
    assert sorted({c.seed for c in load_experiment(p).configs}) == [0, 1, 2]


def test_seeds_override(tmp_path):
    exp = load_experiment("phase3a", seeds=4)
    assert len(exp.configs) == 40
    assert sorted({c.seed for c in exp.configs}) == [0, 1, 2, 3]
    p = write(tmp_path, BASE.replace("steps = 10", "steps = 10\nseeds = [5, 9]") + GRID)
    assert {c.seed for c in load_experiment(p, seeds=1).configs} == {0}


def test_runs_entries_cross_their_own_lists_only(tmp_path):
    text = BASE + """
[[runs]]
batch_size = 4
lr = 0.001
gradient_clip = ["none", 1.0]

[[runs]]
batch_size = 8
lr = [0.1, 0.2]
gradient_clip = 0.5
"""
    exp = load_experiment(write(tmp_path, text))
    assert [(c.batch_size, c.lr, c.gradient_clip) for c in exp.configs] == [
        (4, 0.001, None), (4, 0.001, 1.0), (8, 0.1, 0.5), (8, 0.2, 0.5)
    ]


def test_sections_are_optional_and_take_the_dataclass_defaults(tmp_path):
    p = write(tmp_path, 'name = "d"\n[train]\nsteps = 5\n[grid]\nbatch_size = 2\nlr = 0.1\ngradient_clip = 1\n')
    (c,) = load_experiment(p).configs
    ref = RunConfig(experiment="d", batch_size=2, lr=0.1, gradient_clip=1.0, seed=0, steps=5)
    assert c == ref
    assert isinstance(c.gradient_clip, float)


def test_explicit_optim_and_model_values_reach_the_config(tmp_path):
    text = BASE.replace('optimizer = "adamw"', 'optimizer = "sgd"\nmomentum = 0.8\nweight_decay = 0\n'
                        'warmup_steps = 2\nschedule = "cosine"')
    text = text.replace("steps = 10", "steps = 10\neval_interval = 5\neval_windows = 3")
    (c, *_) = load_experiment(write(tmp_path, text + GRID)).configs
    assert (c.optimizer, c.momentum, c.weight_decay) == ("sgd", 0.8, 0.0)
    assert (c.warmup_steps, c.schedule, c.eval_interval, c.eval_windows) == (2, "cosine", 5, 3)
    assert c.model == ModelShape(d_model=32, n_layer=1, n_head=2, block_size=16)
    adamw = BASE.replace('optimizer = "adamw"', 'optimizer = "adamw"\nbetas = [0.8, 0.95]\neps = 1e-6')
    (c, *_) = load_experiment(write(tmp_path, adamw + GRID, name="adamw")).configs
    assert (c.optimizer, c.betas, c.eps) == ("adamw", (0.8, 0.95), 1e-6)


def test_name_lookup_prefers_an_existing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, BASE.replace('name = "t"', 'name = "local"') + GRID, name="smoke")
    assert load_experiment("smoke").name == "local"  # the file ./smoke, not experiments/smoke.toml
    assert load_experiment("phase3a").name == "phase3a"


# --------------------------------------------------------------------------- validation errors
def _error(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(PyphaseError) as e:
        load_experiment(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(p) in msg  # names the file
    return msg


BAD = [
    # (description, transform of BASE+GRID, fragments the message must contain)
    ("unknown top key", lambda t: "colour = 1\n" + t, ["unknown key 'colour'"]),
    ("unknown model key", lambda t: t.replace("[model]\n", "[model]\nwidth = 3\n"), ["model.width", "unknown key"]),
    ("unknown optim key", lambda t: t.replace("[optim]\n", "[optim]\nnesterov = true\n"), ["optim.nesterov"]),
    ("unknown train key", lambda t: t.replace("[train]\n", "[train]\nepochs = 2\n"), ["train.epochs"]),
    ("unknown grid key", lambda t: t.replace("[grid]\n", "[grid]\nmomentum = [0.9]\n"), ["grid.momentum"]),
    ("momentum with adamw", lambda t: t.replace("[optim]\n", "[optim]\nmomentum = 0.8\n"),
     ["optim.momentum", "has no effect with optimizer adamw"]),
    ("betas with sgd", lambda t: t.replace('optimizer = "adamw"', 'optimizer = "sgd"\nbetas = [0.1, 0.2]'),
     ["optim.betas", "has no effect with optimizer sgd"]),
    ("eps with sgd", lambda t: t.replace('optimizer = "adamw"', 'optimizer = "sgd"\neps = 1e-6'),
     ["optim.eps", "has no effect with optimizer sgd"]),
    ("lr zero", lambda t: t.replace("lr = [0.001, 0.01]", "lr = [0.001, 0]"), ["grid.lr", "> 0", "0"]),
    ("lr negative", lambda t: t.replace("lr = [0.001, 0.01]", "lr = [-0.1]"), ["grid.lr", "-0.1"]),
    ("lr nan", lambda t: t.replace("lr = [0.001, 0.01]", "lr = [nan]"), ["grid.lr", "nan"]),
    ("lr string", lambda t: t.replace("lr = [0.001, 0.01]", 'lr = ["fast"]'), ["grid.lr", "'fast'"]),
    ("batch zero", lambda t: t.replace("batch_size = [4, 8]", "batch_size = [0]"), ["grid.batch_size", ">= 1"]),
    ("batch float", lambda t: t.replace("batch_size = [4, 8]", "batch_size = [4.5]"), ["grid.batch_size", "integer"]),
    ("batch bool", lambda t: t.replace("batch_size = [4, 8]", "batch_size = [true]"), ["grid.batch_size", "integer"]),
    ("clip zero", lambda t: t.replace('gradient_clip = [1.0, "none"]', "gradient_clip = [0.0]"), ["grid.gradient_clip", "> 0"]),
    ("clip negative", lambda t: t.replace('gradient_clip = [1.0, "none"]', "gradient_clip = [-1]"), ["grid.gradient_clip"]),
    ("clip word", lambda t: t.replace('gradient_clip = [1.0, "none"]', 'gradient_clip = ["off"]'), ["grid.gradient_clip", "'off'", "none"]),
    ("unknown optimizer", lambda t: t.replace('optimizer = "adamw"', 'optimizer = "lion"'), ["optim.optimizer", "'lion'", "adamw, sgd"]),
    ("unknown schedule", lambda t: t.replace("[optim]\n", '[optim]\nschedule = "linear"\n'), ["optim.schedule", "'linear'"]),
    ("betas length", lambda t: t.replace("[optim]\n", "[optim]\nbetas = [0.9]\n"), ["optim.betas"]),
    ("beta out of range", lambda t: t.replace("[optim]\n", "[optim]\nbetas = [0.9, 1.0]\n"), ["optim.betas[1]"]),
    ("eps zero", lambda t: t.replace("[optim]\n", "[optim]\neps = 0.0\n"), ["optim.eps", "> 0"]),
    ("weight decay negative", lambda t: t.replace("[optim]\n", "[optim]\nweight_decay = -0.1\n"), ["optim.weight_decay"]),
    ("momentum one", lambda t: t.replace("[optim]\n", "[optim]\nmomentum = 1.0\n"), ["optim.momentum"]),
    ("warmup longer than run", lambda t: t.replace("[optim]\n", "[optim]\nwarmup_steps = 11\n"), ["optim.warmup_steps", "exceeds"]),
    ("d_model not divisible", lambda t: t.replace("n_head = 2", "n_head = 3"), ["model.d_model", "n_head"]),
    ("block_size zero", lambda t: t.replace("block_size = 16", "block_size = 0"), ["model.block_size", ">= 1"]),
    ("d_model float", lambda t: t.replace("d_model = 32", "d_model = 32.0"), ["model.d_model", "integer"]),
    ("steps zero", lambda t: t.replace("steps = 10", "steps = 0"), ["train.steps", ">= 1"]),
    ("steps missing", lambda t: t.replace("steps = 10", ""), ["train.steps", "missing"]),
    ("eval_interval zero", lambda t: t.replace("steps = 10", "steps = 10\neval_interval = 0"), ["train.eval_interval"]),
    ("eval_windows string", lambda t: t.replace("steps = 10", 'steps = 10\neval_windows = "8"'), ["train.eval_windows", "integer"]),
    ("seeds empty", lambda t: t.replace("steps = 10", "steps = 10\nseeds = []"), ["train.seeds", "empty"]),
    ("seeds negative", lambda t: t.replace("steps = 10", "steps = 10\nseeds = [-1]"), ["train.seeds", ">= 0"]),
    ("seeds repeated", lambda t: t.replace("steps = 10", "steps = 10\nseeds = [1, 1]"), ["train.seeds", "repeated"]),
    ("checkpoint_every zero", lambda t: t.replace("steps = 10", "steps = 10\ncheckpoint_every = 0"), ["train.checkpoint_every"]),
    ("empty grid axis", lambda t: t.replace("lr = [0.001, 0.01]", "lr = []"), ["grid.lr", "empty"]),
    ("missing grid axis", lambda t: t.replace("lr = [0.001, 0.01]\n", ""), ["grid.lr", "missing"]),
    ("no grid and no runs", lambda t: t.split("[grid]")[0], ["[grid]", "[[runs]]"]),
    ("grid and runs", lambda t: t + "[[runs]]\nbatch_size = 1\nlr = 0.1\ngradient_clip = 1.0\n", ["exactly one"]),
    ("duplicate config", lambda t: t.replace("batch_size = [4, 8]", "batch_size = [4, 4]"), ["listed twice"]),
    ("model not a table", lambda t: "model = 3\n" + t.replace("[model]\nd_model = 32\nn_layer = 1\nn_head = 2\nblock_size = 16\n", ""), ["model: expected a table"]),
    ("description not a string", lambda t: t.replace('description = "test"', "description = 3"), ["description"]),
    ("bad name", lambda t: t.replace('name = "t"', 'name = "a/b"'), ["name", "'a/b'"]),
]


@pytest.mark.parametrize("desc,transform,fragments", BAD, ids=[b[0] for b in BAD])
def test_validation_error_names_file_key_and_problem(tmp_path, desc, transform, fragments):
    msg = _error(tmp_path, transform(BASE + GRID))
    for frag in fragments:
        assert frag in msg, (desc, msg)


def test_runs_entry_errors_name_the_entry(tmp_path):
    text = BASE + "[[runs]]\nbatch_size = 4\nlr = 0.1\ngradient_clip = 1.0\n[[runs]]\nbatch_size = 4\nlr = -1\ngradient_clip = 1.0\n"
    assert "runs[1].lr" in _error(tmp_path, text)
    assert "runs[0].clip" in _error(tmp_path, BASE + "[[runs]]\nbatch_size = 4\nlr = 0.1\nclip = 1.0\n")


def test_malformed_toml_is_one_line(tmp_path):
    msg = _error(tmp_path, "name = \n[[[")
    assert "not valid TOML" in msg


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(PyphaseError) as e:
        load_experiment("phase9")
    msg = str(e.value)
    assert "phase9" in msg and "phase3a" in msg and "smoke" in msg and "\n" not in msg


def test_seeds_override_must_be_positive():
    with pytest.raises(PyphaseError, match="--seeds"):
        load_experiment("smoke", seeds=0)


def test_seed_counts_and_values_are_bounded_before_any_list_is_built(tmp_path):
    """A huge --seeds or train.seeds is a one-line error, not an OverflowError or MemoryError from
    building range(n); seeds themselves fit the Int64 the summaries store."""
    from pyphase.config import MAX_SEED, MAX_SEEDS

    for n in (MAX_SEEDS + 1, 10**12, 10**20):
        with pytest.raises(PyphaseError, match=f"--seeds: must be <= {MAX_SEEDS:,}"):
            load_experiment("smoke", seeds=n)
    assert len({c.seed for c in load_experiment("smoke", seeds=MAX_SEEDS).configs}) == MAX_SEEDS
    for seeds, match in ((str(10**20), "train.seeds: must be <= 10,000"),
                         (f"[0, {MAX_SEED + 1}]", f"train.seeds: must be <= {MAX_SEED:,}")):
        p = write(tmp_path, BASE.replace("steps = 10", f"steps = 10\nseeds = {seeds}") + GRID)
        with pytest.raises(PyphaseError, match=match):
            load_experiment(p)
    p = write(tmp_path, BASE.replace("steps = 10", f"steps = 10\nseeds = [0, {MAX_SEED}]") + GRID)
    assert {c.seed for c in load_experiment(p).configs} == {0, MAX_SEED}


def test_direct_construction_is_validated_too():
    with pytest.raises(PyphaseError, match="lr"):
        RunConfig(experiment="x", batch_size=8, lr=0.0, gradient_clip=1.0, seed=0, steps=1)
    with pytest.raises(PyphaseError, match="gradient_clip"):
        RunConfig(experiment="x", batch_size=8, lr=0.1, gradient_clip=-math.inf, seed=0, steps=1)
    with pytest.raises(PyphaseError, match="n_head"):
        ModelShape(d_model=30, n_head=4)


def test_cli_validation_error_is_one_line_and_exit_2(tmp_path):
    p = write(tmp_path, (BASE + GRID).replace("lr = [0.001, 0.01]", "lr = [-1.0]"))
    r = subprocess.run([sys.executable, "-m", "pyphase", "train", str(p), "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "grid.lr" in lines[0] and str(p) in lines[0], r.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_unknown_experiment_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyphase", "train", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown experiment 'nope'" in r.stderr


def test_a_step_count_past_the_bound_is_refused_naming_it() -> None:
    from pyphase.config import MAX_STEPS
    from pyphase.errors import PyphaseError

    RunConfig(experiment="t", batch_size=4, lr=1e-3, gradient_clip=None, seed=0, steps=MAX_STEPS)
    with pytest.raises(PyphaseError, match=r"^steps: must be <= 100,000,000, got 9,223,372,036,854,775,807$"):
        RunConfig(experiment="t", batch_size=4, lr=1e-3, gradient_clip=None, seed=0, steps=2**63 - 1)


def test_float_problem_is_the_one_bound_check_of_config_and_predict():
    import numpy as np

    from pyphase.config import float_problem
    from pyphase.predict import OptimizerSettings

    assert float_problem(0.0, lo=0.0, hi_open=1.0) is None
    assert float_problem(np.float32(0.5), lo=0.0, hi_open=1.0) is None  # numpy's numbers are numbers
    assert float_problem(1.0, lo=0.0, hi_open=1.0) == "must be finite and >= 0.0 and < 1.0, got 1.0"
    assert float_problem(float("nan"), lo=0.0) == "must be finite and >= 0.0, got nan"
    assert float_problem(True, lo=0.0) == "expected a number, got True"
    assert float_problem(np.bool_(True), lo=0.0) == f"expected a number, got {np.bool_(True)!r}"
    # predict's settings and the trainer's config refuse the same values in the same words
    bad = OptimizerSettings((0.9, 0.999), 1e-8, -1.0, 1.0, 0, "constant")
    assert bad.problems() == {"momentum": "must be finite and >= 0.0 and < 1.0, got 1.0",
                              "weight_decay": "must be finite and >= 0.0, got -1.0"}
    for key, value in (("momentum", 1.0), ("weight_decay", -1.0)):
        with pytest.raises(PyphaseError, match=rf"^{key}: {bad.problems()[key]}$"):
            RunConfig(experiment="x", batch_size=8, lr=0.01, gradient_clip=None, seed=0, steps=10, **{key: value})


# --------------------------------------------------------------------------- bounds past fixed-size numbers
BIG = 99_999_999_999_999_999_999  # past int64: torch and the Rust core raised OverflowError on it


@pytest.mark.parametrize("line,fragment", [
    ("batch_size = [4, 8]", "grid.batch_size: must be <= 1,048,576, got 99,999,999,999,999,999,999"),
    ("d_model = 32", "model.d_model: must be <= 65,536"),
    ("n_layer = 1", "model.n_layer: must be <= 1,024"),
    ("n_head = 2", "model.n_head: must be <= 65,536"),
    ("block_size = 16", "model.block_size: must be <= 1,048,576"),
    ("[model]", "model.mlp_ratio: must be <= 64"),
    ("steps = 10", "train.steps: must be <= 100,000,000"),
    ("[train]", "train.eval_interval: must be <= 100,000,000"),
    ("[train]", "train.eval_windows: must be <= 1,073,741,824"),
    ("[train]", "train.checkpoint_every: must be <= 100,000,000"),
    ("[optim]", "optim.warmup_steps: must be <= 100,000,000"),
])
def test_every_integer_field_has_a_bound_below_int64(tmp_path, line, fragment):
    """Each integer of the TOML past int64 (or merely absurd) is a one-line error naming the key, not an
    OverflowError from the batcher or torch, a loop over 10^20 layers, or an accepted value."""
    key = fragment.split(":")[0].split(".")[1]
    text = (BASE + GRID).replace(line, f"{line}\n{key} = {BIG}" if line.startswith("[") else f"{key} = "
                                 + (f"[{BIG}]" if key == "batch_size" else str(BIG)))
    msg = _error(tmp_path, text)
    assert fragment in msg, msg


def test_model_shape_bounds_hold_at_their_maximum_and_refuse_one_more():
    from pyphase.config import MODEL_MAXIMA

    assert ModelShape(d_model=MODEL_MAXIMA["d_model"], n_head=1).d_model == 65_536
    for key, most in MODEL_MAXIMA.items():
        with pytest.raises(PyphaseError, match=rf"^model\.{key}: must be <= {most:,}, got {most + 1:,}$"):
            ModelShape(**{key: most + 1, **({"n_head": 1} if key == "d_model" else {})})
    with pytest.raises(PyphaseError, match=r"^model\.d_model: must be <= 65,536, got 4,096,000,000$"):
        ModelShape(d_model=4_096_000_000)


def test_steps_times_batch_size_stays_within_the_batchers_output():
    from pyphase.config import MAX_BATCH_WINDOWS

    RunConfig(experiment="x", batch_size=1 << 20, lr=0.01, gradient_clip=None, seed=0, steps=MAX_BATCH_WINDOWS >> 20)
    with pytest.raises(PyphaseError, match=r"^steps: 1,025 steps x batch_size 1,048,576 = 1,074,790,400 training "
                                           r"windows, at most 1,073,741,824"):
        RunConfig(experiment="x", batch_size=1 << 20, lr=0.01, gradient_clip=None, seed=0, steps=1025)


@pytest.mark.parametrize("line,fragment", [
    ("lr = [0.001, 0.01]", "grid.lr: must be in [1.175494e-38, 3.402823e+38]"),
    ("gradient_clip = [1.0, \"none\"]", "grid.gradient_clip: must be in [1.175494e-38, 3.402823e+38]"),
    ("[optim]", "optim.eps: must be in [1.175494e-38, 3.402823e+38]"),
    ("[optim]", "optim.weight_decay: must be <= 3.402823e+38"),
])
@pytest.mark.parametrize("value", ["1e300", "1e-300"])
def test_floats_the_trainer_holds_in_float32_must_be_float32_numbers(tmp_path, line, fragment, value):
    """1e300 became inf in the trainer's float32 tensors (and an eps of 1e-300 became 0: 0/0 where a
    second moment is 0); a finite float64 is not enough."""
    key = fragment.split(":")[0].split(".")[1]
    new = f"{line}\n{key} = {value}" if line.startswith("[") else f"{key} = [{value}]"
    text = (BASE + GRID).replace(line, new)
    if key == "weight_decay" and value == "1e-300":  # a tiny weight decay is a tiny weight decay
        assert load_experiment(write(tmp_path, text)).configs[0].weight_decay == 1e-300
        return
    msg = _error(tmp_path, text)
    assert fragment in msg and f"got {float(value):g}" in msg, msg


def test_a_huge_integer_where_a_number_goes_is_one_line():
    """math.isfinite raised OverflowError on an int past float's range."""
    with pytest.raises(PyphaseError, match=r"^lr: must be finite and > 0, got an integer of 401 digits$"):
        RunConfig(experiment="x", batch_size=8, lr=10**400, gradient_clip=None, seed=0, steps=10)
    with pytest.raises(PyphaseError, match=r"^weight_decay: must be finite and >= 0.0, got an integer of 401 digits$"):
        RunConfig(experiment="x", batch_size=8, lr=0.01, gradient_clip=None, seed=0, steps=10, weight_decay=10**400)
