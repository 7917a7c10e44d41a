"""`pyphase train`: the smoke experiment end to end on CPU through the console entry point (JSON
and table output, rerun skips finished runs), and every user error as one line with exit code 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import sys

import polars as pl
import pytest
import torch

from pyphase.config import load_experiment
from pyphase.schema import SEED_SUMMARY_COLUMNS, SUMMARY_COLUMNS
from pyphase.sweep import STEPS_FILE

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the smoke model is tiny: threads only add overhead


def pyphase(*args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyphase", *args], env=ENV if env is None else env,
                          capture_output=True, text=True, check=False, timeout=timeout)


# The synthetic corpus whatever PYPHASE_DATA says (the device sets it to Tiny Shakespeare): for the
# tests that quote a parameter count, which depends on the corpus's vocabulary
SYNTHETIC_ENV = {k: v for k, v in ENV.items() if k != "PYPHASE_DATA"}


def test_train_smoke_end_to_end_json_then_table(tmp_path):
    out = tmp_path / "runs"
    r = pyphase("train", "smoke", "--device", "cpu", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)  # the progress bar went to stderr, stdout is pure JSON
    configs = load_experiment("smoke").configs
    assert [row["run_id"] for row in rows] == [c.run_id for c in configs]
    for row, c in zip(rows, configs):
        assert list(row)[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
        assert (row["batch_size"], row["lr"], row["gradient_clip"], row["seed"]) == (
            c.batch_size, c.lr, c.gradient_clip, c.seed)
        assert row["num_steps"] == c.steps and row["device"] == "cpu"
        assert row["torch_version"] == torch.__version__ and row["n_params"] > 0
        assert row["tokens_per_s"] > 0 and row["wall_time_s"] > 0
        if c.gradient_clip is not None:
            assert row["avg_grad_norm_after"] <= c.gradient_clip
            steps = pl.read_parquet(out / "smoke" / c.run_id / STEPS_FILE).filter(pl.col("step") >= 1)
            assert steps["grad_norm_after"].max() <= c.gradient_clip
            assert steps["clipped"].mean() == pytest.approx(row["avg_clip_frequency"])
        else:
            assert row["avg_clip_frequency"] == 0.0
    assert "smoke" in r.stderr  # the sweep's progress bar

    again = pyphase("train", "smoke", "--device", "cpu", "--out", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 runs trained, 12 already finished" in again.stdout
    header = again.stdout.splitlines()[1]
    for col in ["run_id", "seed", *SEED_SUMMARY_COLUMNS]:
        assert col in again.stdout, col
    assert "batch_size" in header
    for c in configs:
        assert c.run_id in again.stdout
    assert again.stderr == ""


def test_train_seeds_override_runs_each_config_per_seed(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        'name = "tiny"\n[model]\nd_model = 16\nn_layer = 1\nn_head = 2\nblock_size = 16\n'
        "[train]\nsteps = 4\neval_interval = 2\neval_windows = 2\n"
        "[grid]\nbatch_size = 2\nlr = 0.01\ngradient_clip = 1.0\n"
    )
    r = pyphase("train", str(toml), "--device", "cpu", "--out", str(tmp_path / "runs"), "--seeds", "3", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["seed"] for row in rows] == [0, 1, 2]
    losses = {row["final_train_loss"] for row in rows}
    assert len(losses) == 3  # different seeds, different runs


ERRORS = [
    (["--device", "tpu"], "--device tpu"),
    (["--max-pack", "0"], "--max-pack"),
    (["--packs-together", "0"], "--packs-together"),
    (["--seeds", "0"], "--seeds"),
    (["--data", "/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
]


def main_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The console entry point `pyphase.cli.main`, in this process (no interpreter start-up)."""
    from pyphase.cli import main

    monkeypatch.setattr(sys, "argv", ["pyphase", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", ERRORS, ids=[e[0][0] for e in ERRORS])
def test_train_user_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, args, fragment):
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--out", str(tmp_path / "runs"), *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert not list((tmp_path / "runs").glob("smoke/*/summary.parquet"))


def test_train_json_is_strict_with_a_diverged_run(tmp_path, monkeypatch, capsys):
    from test_sweep import DIVERGING

    toml = tmp_path / "div.toml"
    toml.write_text(DIVERGING)
    monkeypatch.setattr(sys, "argv", ["pyphase", "train", str(toml), "--out", str(tmp_path / "runs"), "--json",
                                      "--no-progress"])
    from pyphase.cli import main

    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    out = capsys.readouterr().out
    rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"))
    bad = max(rows, key=lambda r: r["lr"])
    # its last val loss is NaN here, finite on another machine's torch (weights still finite): either way strict
    assert bad["converged"] is False and (bad["final_val_loss"] is None or math.isfinite(bad["final_val_loss"]))
    from pyphase import cli

    cli._print_json({"x": float("nan"), "y": [float("inf"), 1.5], "z": -float("inf")})
    assert json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c)) == {"x": None, "y": [None, 1.5],
                                                                                            "z": None}


def test_a_shard_launched_by_hand_reports_what_is_finished_so_far(tmp_path, monkeypatch, capsys):
    """RANK/WORLD_SIZE set by hand (no torchrun, so no final barrier): every shard prints the runs
    finished so far, with --json too, and the last line says whose counts they are."""
    from pyphase.cli import main

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, finished in (("1", 6), ("0", 12)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setattr(sys, "argv", ["pyphase", "train", "smoke", "--out", str(tmp_path / "runs"), "--no-progress"])
        with pytest.raises(SystemExit) as e:
            main()
        out = capsys.readouterr().out
        assert e.value.code == 0
        assert f"smoke: {finished} of 12 runs finished; rank {rank} of 2 trained 6 and found 0 finished" in out
    monkeypatch.setattr(sys, "argv", ["pyphase", "train", "smoke", "--out", str(tmp_path / "runs"), "--json",
                                      "--no-progress"])
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit):
        main()
    assert len(json.loads(capsys.readouterr().out)) == 12


def test_a_toml_that_is_not_utf8_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    code, err = main_in_process(monkeypatch, capsys, "train", str(toml), "--out", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {toml}: not valid TOML: not UTF-8"), err


def test_train_out_that_cannot_be_created_is_one_line_exit_2_before_any_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--out", str(blocker / "runs"))
    assert code == 2
    assert err == f"error: --out {blocker / 'runs'}: cannot create {blocker / 'runs' / 'smoke'}: Not a directory\n", err


def test_a_corpus_too_short_for_a_validation_window_is_one_line_exit_2_before_any_training(tmp_path, monkeypatch,
                                                                                           capsys):
    """50 characters: a train split of 45 and a validation split of 5, shorter than the smoke
    model's window of block_size + 1 = 33. One line naming the file, the split, its length and
    what is needed, before any output folder is made (the Rust batcher's error named neither)."""
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the quick brown fox jumps over the lazy dog. hello", encoding="utf-8")
    out = tmp_path / "runs"
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--device", "cpu", "--data", str(tiny),
                                "--out", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: corpus {tiny}: validation split has 5 characters, fewer than the 33 one window "
                          "needs (block_size + 1 = 32 + 1); "), err
    assert not out.exists()
    # calibrate (tiny shape: block_size 32) checks its corpus the same way before measuring anything
    code, err = main_in_process(monkeypatch, capsys, "calibrate", "--data", str(tiny), "--device", "cpu", "--shape",
                                "tiny", "--no-progress", "--out", str(tmp_path / "cal" / "c.json"))
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: corpus {tiny}: validation split has 5 characters, fewer than the 33 "), err
    assert not (tmp_path / "cal").exists()


TINY_EXPERIMENT = """\
name = "short"
[model]
d_model = 16
n_layer = 1
n_head = 2
block_size = 16
[train]
steps = 2
eval_interval = 2
eval_windows = 4
[grid]
batch_size = 2
lr = 1e-3
gradient_clip = 1.0
"""


def test_a_corpus_with_exactly_one_window_in_each_split_trains(tmp_path, monkeypatch, capsys):
    """Folder splits of block_size + 1 = 17 characters each: exactly one window, enough to train
    and to evaluate (on that one window); 16 characters of validation is the one-line error."""
    toml = tmp_path / "short.toml"
    toml.write_text(TINY_EXPERIMENT)
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "wiki.train.raw").write_text("abcdefghijklmnopq", encoding="utf-8")
    (wt / "wiki.valid.raw").write_text("qponmlkjihgfedcba", encoding="utf-8")
    code, err = main_in_process(monkeypatch, capsys, "train", str(toml), "--device", "cpu", "--data", str(wt),
                                "--out", str(tmp_path / "runs"), "--no-progress")
    assert code == 0, err
    assert len(list((tmp_path / "runs" / "short").glob("*/summary.parquet"))) == 1
    (wt / "wiki.valid.raw").write_text("qponmlkjihgfedcb", encoding="utf-8")
    code, err = main_in_process(monkeypatch, capsys, "train", str(toml), "--device", "cpu", "--data", str(wt),
                                "--out", str(tmp_path / "runs2"), "--no-progress")
    assert code == 2 and err == (f"error: corpus {wt}: validation split (wiki.valid.raw) has 16 characters, fewer "
                                 "than the 17 one window needs (block_size + 1 = 16 + 1); use longer splits or a "
                                 "smaller block_size\n"), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_device_cuda_without_cuda_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--device", "cuda", "--out", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and "CUDA is not available" in err


def test_train_entry_point_exits_2_in_a_real_process(tmp_path):
    r = pyphase("train", "smoke", "--device", "tpu", "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--device tpu" in r.stderr


def test_fast_exit_only_after_success_with_cuda_and_only_from_the_console(monkeypatch, capsys):
    """`main(fast_exit=True)` (the console script) ends a successful run that initialised CUDA with
    os._exit(0) after flushing; not after a failure, not without CUDA, not with PYPHASE_FAST_EXIT=0,
    and never for `main()` as tests call it."""
    from pyphase import cli

    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)

    def run(*args: str, fast: bool = True) -> int:
        monkeypatch.setattr(sys, "argv", ["pyphase", *args])
        with pytest.raises(SystemExit) as e:
            cli.main(fast_exit=fast)
        return e.value.code

    assert run("--help") == 0 and exits == [0]
    assert "Usage" in capsys.readouterr().out  # flushed before the exit
    assert run("--help", fast=False) == 0 and exits == [0]
    assert run("train", "smoke", "--device", "tpu") == 2 and exits == [0]
    monkeypatch.setenv("PYPHASE_FAST_EXIT", "0")
    assert run("--help") == 0 and exits == [0]
    monkeypatch.delenv("PYPHASE_FAST_EXIT")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert run("--help") == 0 and exits == [0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda_with_and_without_the_fast_exit_writes_the_same_runs(tmp_path):
    """On CUDA the console script ends without the interpreter's teardown: exit code 0, the JSON on
    stdout complete, every run's files on disk, the same numbers as with the normal exit."""
    keep = ["run_id", "final_train_loss", "final_val_loss", "avg_grad_norm_before", "avg_grad_norm_after",
            "avg_clip_frequency", "converged"]
    rows = {}
    for fast in ("1", "0"):
        out = tmp_path / fast
        r = subprocess.run([sys.executable, "-m", "pyphase", "train", "smoke", "--device", "cuda", "--out", str(out),
                            "--json", "--no-progress"], env={**ENV, "PYPHASE_FAST_EXIT": fast}, capture_output=True,
                           text=True, check=False, timeout=300)
        assert r.returncode == 0, r.stderr
        rows[fast] = [{k: row[k] for k in keep} for row in json.loads(r.stdout)]
        for c in load_experiment("smoke").configs:
            assert (out / "smoke" / c.run_id / STEPS_FILE).exists()
    assert rows["1"] == rows["0"] and len(rows["1"]) == len(load_experiment("smoke").configs)


@pytest.mark.parametrize("how", ["typer", "raw"])
def test_ctrl_c_is_one_line_and_exit_130_saying_train_resumes(tmp_path, monkeypatch, capsys, how) -> None:
    """Ctrl-C in a command: exit 130 and one line, which for train says the same command resumes;
    whether typer turned the KeyboardInterrupt into Exit(130) ("typer") or it came through ("raw",
    e.g. a second Ctrl-C, or a typer that lets it pass)."""
    import typer

    from pyphase import cli, sweep

    def interrupted(*a, **k):
        if how == "typer":
            raise typer.Exit(130)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_experiment", interrupted)
    for args, said in ((["train", "smoke", "--device", "cpu", "--out", str(tmp_path)],
                        "pyphase: interrupted; finished runs and checkpoints are kept: the same command resumes\n"),):
        monkeypatch.setattr(sys, "argv", ["pyphase", *args])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        _, err = capsys.readouterr()
        assert exc.value.code == 130 and err == said, (exc.value.code, err)
    import pyphase.predict as pp

    monkeypatch.setattr(pp, "run_predict", interrupted)
    monkeypatch.setattr(sys, "argv", ["pyphase", "predict", "--out", str(tmp_path / "p")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 130 and capsys.readouterr().err == "pyphase: interrupted\n"


# --------------------------------------------------------------------------- sizes past what the trainer can hold
def smoke_with(tmp_path, old: str, new: str):
    """experiments/smoke.toml with one line replaced, written to tmp_path/bad.toml."""
    from pyphase.config import experiments_dir

    text = (experiments_dir() / "smoke.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new))
    return path


def assert_one_line_and_nothing_written(r: subprocess.CompletedProcess[str], out, *fragments: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr
    assert not out.exists()  # not even the plan (out/smoke/plan.json)


@pytest.mark.parametrize("old,new,fragments", [
    # past int64: the batcher's OverflowError "int too big to convert", after plan.json was written
    ("batch_size = [4, 8]", "batch_size = [99999999999999999999]",
     ["grid.batch_size: must be <= 1,048,576, got 99,999,999,999,999,999,999"]),
    # within int64 but absurd: the batcher's own error, also after plan.json
    ("batch_size = [4, 8]", "batch_size = [4611686018427387904]", ["grid.batch_size: must be <= 1,048,576"]),
    # torch.empty's TypeError "Overflow when unpacking long long"
    ("d_model = 32", "d_model = 4096000000", ["model.d_model: must be <= 65,536, got 4,096,000,000"]),
    # the CPU allocator's RuntimeError "you tried to allocate 2474093051904 bytes"
    ("d_model = 32", "d_model = 65536", ["a pack of 6 configs at batch_size 4", "103,087,210,496 parameters each",
                                         "needs at least 9 TiB, more than cpu's"]),
    # a TypeError from the model's construction
    ("mlp_ratio = 4", "mlp_ratio = 99999999999999999999", ["model.mlp_ratio: must be <= 64"]),
], ids=["batch-past-int64", "batch-2^62", "d_model-4096000000", "d_model-65536", "mlp_ratio-past-int64"])
def test_a_size_the_trainer_cannot_hold_is_one_line_exit_2_and_writes_nothing(tmp_path, old, new, fragments):
    out = tmp_path / "rb"
    toml = smoke_with(tmp_path, old, new)
    r = pyphase("train", str(toml), "--device", "cpu", "--out", str(out), "--no-progress", env=SYNTHETIC_ENV)
    assert_one_line_and_nothing_written(r, out, *fragments)


def test_a_pack_past_the_batchers_output_is_refused_before_the_plan_is_written(tmp_path):
    """Each config fits (steps x batch_size <= 2^30) but the pack of 2 draws twice that: refused before
    any output, with the --max-pack that fits (the batcher's ValueError came after plan.json)."""
    toml = smoke_with(tmp_path, "batch_size = [4, 8]", "batch_size = [1048576]")
    toml.write_text(toml.read_text().replace("steps = 40", "steps = 1000").replace("lr = [1e-3, 3e-3, 1e-2]",
                                                                                 "lr = [1e-3]"))
    out = tmp_path / "rb"
    r = pyphase("train", str(toml), "--device", "cpu", "--out", str(out), "--no-progress")
    assert_one_line_and_nothing_written(r, out, "a pack of 2 configs at batch_size 1,048,576 (1,000 steps) draws "
                                        "2,097,152,000 window offsets", "(--max-pack 1)")


def _allocator_refuses(self, *args, **kwargs):
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 2474093051904 bytes. Error code 12 (Cannot allocate memory)")


def test_an_allocation_failure_while_building_a_pack_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    """Past the pre-flight floor (sweep.check_pack_fits) the allocator may still refuse: one line with
    how much was asked, and the folder and plan.json the sweep had just made are removed again."""
    import pyphase.train

    monkeypatch.setattr(pyphase.train.PackTrainer, "__init__", _allocator_refuses)
    monkeypatch.delenv("PYPHASE_DATA", raising=False)  # the synthetic corpus: the count quoted is its model's
    out = tmp_path / "new" / "runs"
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--device", "cpu", "--out", str(out),
                                "--no-progress")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: out of memory on cpu while building or training a pack of 6 configs at batch_size 4 "
                          "(28,480 parameters a model, block_size 32): an allocation of 2.25 TiB failed; use "
                          "--max-pack 1"), err
    assert not (tmp_path / "new").exists()


def test_an_allocation_failure_keeps_what_an_earlier_sweep_wrote(tmp_path, monkeypatch, capsys):
    """Only what this sweep made is removed: an existing experiment folder and its plan stay."""
    import pyphase.train

    out = tmp_path / "runs"
    (out / "smoke").mkdir(parents=True)
    (out / "smoke" / "notes.txt").write_text("mine")
    monkeypatch.setattr(pyphase.train.PackTrainer, "__init__", _allocator_refuses)
    code, err = main_in_process(monkeypatch, capsys, "train", "smoke", "--device", "cpu", "--out", str(out),
                                "--no-progress")
    assert code == 2 and "out of memory on cpu" in err
    assert sorted(p.name for p in (out / "smoke").iterdir()) == ["notes.txt", "plan.json"]


@pytest.mark.parametrize("exc", [RuntimeError("shape mismatch in the model"), TypeError("a bug")])
def test_other_errors_while_building_a_pack_are_not_taken_for_allocation_failures(tmp_path, monkeypatch, exc):
    import pyphase.train
    from pyphase.cli import main

    def fail(self, *args, **kwargs):
        raise exc

    monkeypatch.setattr(pyphase.train.PackTrainer, "__init__", fail)
    monkeypatch.setattr(sys, "argv", ["pyphase", "train", "smoke", "--device", "cpu", "--out", str(tmp_path / "r"),
                                      "--no-progress"])
    with pytest.raises(type(exc), match=str(exc)):
        main()


def test_allocation_failure_words_what_each_allocator_asked_for():
    from pyphase.sweep import allocation_failure

    assert allocation_failure(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                           "2474093051904 bytes. Error code 12")) == "an allocation of 2.25 TiB"
    assert allocation_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                                     "total capacity of 79.19 GiB")) == "an allocation of 2.00 GiB"
    assert allocation_failure(MemoryError()) == "an allocation"
    for other in (RuntimeError("CUDA error: an illegal memory access"), ValueError("allocate 3 bytes"), OSError()):
        assert allocation_failure(other) is None


def test_a_ctrl_c_while_numpy_is_first_imported_stops_the_command(tmp_path):
    """torch's C extension imports numpy itself and drops whatever that import raises, numpy being
    optional to it: a Ctrl-C then was dropped too, and the sweep ran to its end with exit 0 (or failed
    later on a half-imported numpy). The console imports numpy first, in Python. Here the first import
    of numpy raises KeyboardInterrupt, as a Ctrl-C during it does."""
    out = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import sys, traceback
        class CtrlCOnce:
            fired = False
            def find_spec(self, name, path=None, target=None):
                # an import of numpy, not a probe for it (polars' lazy imports call find_spec)
                importing = traceback.extract_stack()[-3].name == "_find_and_load_unlocked"
                if name == "numpy" and importing and not CtrlCOnce.fired:
                    CtrlCOnce.fired = True
                    raise KeyboardInterrupt
                return None
        sys.meta_path.insert(0, CtrlCOnce())
        sys.argv = ["pyphase", "train", "smoke", "--device", "cpu", "--out", {str(out)!r}, "--no-progress"]
        from pyphase.console import main
        main()
    """)
    env = {**ENV, "PYPHASE_COLDSTART": "0"}  # its finder would come before this one
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 130, (r.returncode, r.stderr[-2000:])
    assert r.stderr == "pyphase: interrupted; finished runs and checkpoints are kept: the same command resumes\n"
    assert not out.exists()
