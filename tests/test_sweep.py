"""The sweep runner: sharding partitions the plan, packing groups by pack key, finished runs are
skipped, an interrupted sweep (in-process after a checkpoint, or SIGKILLed in a subprocess) resumes
to exactly the results of an uninterrupted one, and a diverging config is recorded without stopping
the sweep. Everything trains the real `train.run_together` on the `smoke` experiment (CPU, fp32).

Tolerance: resumed and uninterrupted sweeps are compared for exact (bitwise) equality of every
number except wall time and tokens/s: on one CPU thread the trainer is deterministic and its
checkpoint holds the whole state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

import pyphase.train
from pyphase import sweep
from pyphase.config import load_experiment
from pyphase.errors import PyphaseError
from pyphase.schema import SEED_SUMMARY_COLUMNS, STEP_COLUMNS, SUMMARY_COLUMNS
from pyphase.sweep import (
    PACKS_DIR,
    STEPS_FILE,
    SUMMARY_FILE,
    Shard,
    pack,
    pack_id,
    plan,
    resolve_device,
    run_experiment,
    shard_from_env,
    side_by_side,
)

REPO = Path(__file__).resolve().parents[1]
# The only summary values allowed to differ between two sweeps: timings, and the commit (other work
# may commit to the checkout while the tests run).
VOLATILE_COLUMNS = ["wall_time_s", "tokens_per_s", "setup_time_s", "git_commit"]
# One thread: the smoke model is tiny (threads only add sync overhead, badly so on a loaded 2-core
# machine), and in-process and subprocess sweeps then run the very same kernels.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted smoke sweep: the results every other sweep here must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    run_experiment("smoke", device="cpu", out=out, progress=False)
    return out


def finished_ids(out: Path, exp: str = "smoke") -> set[str]:
    return {p.parent.name for p in (out / exp).glob(f"*/{SUMMARY_FILE}")}


def assert_same_results(a: Path, b: Path, exp: str = "smoke", ignore: tuple[str, ...] = ()) -> None:
    ids = finished_ids(a, exp)
    assert ids == finished_ids(b, exp) == {c.run_id for c in load_experiment(exp).configs}
    for d in (a, b):
        assert not (d / exp / PACKS_DIR).exists(), "checkpoints must be gone once every run is written"
    for rid in sorted(ids):
        sa, sb = (pl.read_parquet(d / exp / rid / SUMMARY_FILE) for d in (a, b))
        assert sa.height == sb.height == 1
        drop = [*VOLATILE_COLUMNS, *ignore]
        assert_frame_equal(sa.drop(drop), sb.drop(drop), check_exact=True)
        ta, tb = (pl.read_parquet(d / exp / rid / STEPS_FILE) for d in (a, b))
        assert ta["step"].is_unique().all() and ta["step"].is_sorted()  # no row doubled
        assert_frame_equal(ta, tb, check_exact=True)


# --------------------------------------------------------------------------- planning
@pytest.mark.parametrize("world", [1, 2, 3, 5, 8, 40])
def test_shards_partition_the_plan(world):
    exp = load_experiment("phase2_5", seeds=2)
    shards = [plan(exp, rank=r, world=world) for r in range(world)]
    flat = [c.run_id for s in shards for c in s]
    assert sorted(flat) == sorted(c.run_id for c in exp.configs)  # every config exactly once
    assert len(flat) == len(set(flat))
    order = [c.run_id for c in exp.configs]
    for s in shards:  # each shard keeps the experiment's order
        idx = [order.index(c.run_id) for c in s]
        assert idx == sorted(idx)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_plan_rejects_an_impossible_shard():
    exp = load_experiment("smoke")
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(PyphaseError, match="shard"):
            plan(exp, rank=rank, world=world)


def test_pack_groups_by_key_keeps_order_and_caps_size():
    configs = load_experiment("smoke").configs
    packs = pack(configs)
    assert [len(p) for p in packs] == [6, 6]
    for p in packs:
        assert len({c.pack_key() for c in p}) == 1
    assert [c for p in packs for c in p] == configs  # smoke lists b4 configs first, then b8
    assert [len(p) for p in pack(configs, 4)] == [4, 2, 4, 2]
    assert [len(p) for p in pack(configs, 1)] == [1] * 12
    assert [c for p in pack(configs, 4) for c in p] == configs
    # interleaved keys are still grouped
    mixed = configs[::-1][:3] + configs[:3]
    assert [[c.batch_size for c in p] for p in pack(mixed)] == [[8, 8, 8], [4, 4, 4]]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PyphaseError, match="max-pack"):
            pack(configs, bad)


def test_packs_of_equal_steps_go_side_by_side_in_order():
    configs = load_experiment("smoke").configs
    packs = pack(configs, 4)  # b4: 4 + 2, b8: 4 + 2, all 40 steps
    assert side_by_side(packs, 4) == [packs]
    assert side_by_side(packs, 3) == [packs[:3], packs[3:]]
    assert side_by_side(packs, 1) == [[p] for p in packs]
    longer = [[dataclasses.replace(c, steps=80) for c in packs[1]]]
    assert side_by_side([packs[0], *longer, packs[2]], 4) == [[packs[0], packs[2]], longer]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PyphaseError, match="packs-together"):
            side_by_side(packs, bad)


def test_pack_id_depends_on_members_not_order():
    a, b, c = load_experiment("smoke").configs[:3]
    assert pack_id([a, b]) == pack_id([b, a])
    assert pack_id([a, b]) != pack_id([a, c]) != pack_id([a, b, c])
    assert set(pack_id([a, b])) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")


def test_shard_from_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert shard_from_env() == Shard(0, 1, 0)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert shard_from_env() == Shard(5, 8, 1)
    monkeypatch.setenv("RANK", "8")
    with pytest.raises(PyphaseError, match="RANK=8"):
        shard_from_env()
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(PyphaseError, match="RANK"):
        shard_from_env()
    for loose in ("1_0", "\u0663"):  # int() accepts both; a rank is plain ASCII digits
        monkeypatch.setenv("RANK", loose)
        with pytest.raises(PyphaseError, match="is not an integer"):
            shard_from_env()
    for unset in ("", None):  # half a sweep run silently as rank 0 before
        if unset is None:
            monkeypatch.delenv("RANK")
        else:
            monkeypatch.setenv("RANK", unset)
        with pytest.raises(PyphaseError, match="WORLD_SIZE=8 but RANK is not set"):
            shard_from_env()


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    for bad in ("tpu", "cuda:x", "CPU"):
        if bad.startswith("cuda") and torch.cuda.is_available():
            continue
        with pytest.raises(PyphaseError, match="--device"):
            resolve_device(bad)
    if torch.cuda.is_available():
        assert resolve_device("cuda", local_rank=0) == "cuda:0"
        assert resolve_device("auto") == "cuda:0"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(PyphaseError, match="CUDA is not available"):
            resolve_device("cuda")


def test_git_commit_is_the_checkout_head(monkeypatch):
    monkeypatch.setenv("PYPHASE_GIT_COMMIT", "0123abc")  # names the commit where the code has no .git
    assert sweep.git_commit() == "0123abc"
    monkeypatch.delenv("PYPHASE_GIT_COMMIT")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        assert sweep.git_commit() == "unknown"
    else:
        assert sweep.git_commit() == head.stdout.strip()


# --------------------------------------------------------------------------- a whole sweep
def test_smoke_sweep_writes_every_run_with_the_seed_columns(reference):
    exp = load_experiment("smoke")
    out = reference / "smoke"
    summary = pl.read_parquet(out / f"*/{SUMMARY_FILE}")
    assert summary.columns[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert sorted(summary["run_id"]) == sorted(c.run_id for c in exp.configs)
    assert summary.select(SEED_SUMMARY_COLUMNS).null_count().drop("gradient_clip").sum_horizontal().item() == 0
    assert (summary["num_steps"] == 40).all()
    assert (summary["experiment"] == "smoke").all() and (summary["optimizer"] == "adamw").all()
    assert (summary["device"] == "cpu").all() and (summary["torch_version"] == torch.__version__).all()
    commit = summary["git_commit"].unique().to_list()
    assert len(commit) == 1 and (commit[0] in ("unknown", os.environ.get("PYPHASE_GIT_COMMIT")) or len(commit[0]) == 40)
    from pyphase.data import load_corpus

    corpus = load_corpus(None)
    assert (summary["corpus"] == corpus.name).all() and (summary["corpus_sha256"] == corpus.sha256).all()
    clipped = summary.filter(pl.col("gradient_clip").is_not_null())
    assert (clipped["avg_grad_norm_after"] <= clipped["gradient_clip"]).all()
    off = summary.filter(pl.col("gradient_clip").is_null())
    assert (off["avg_clip_frequency"] == 0).all()
    assert (off["avg_grad_norm_after"] == off["avg_grad_norm_before"]).all()
    for c in exp.configs:
        steps = pl.read_parquet(out / c.run_id / STEPS_FILE)
        assert steps.columns == STEP_COLUMNS
        assert (steps["run_id"] == c.run_id).all()
        train_rows = steps.filter(pl.col("step") >= 1)
        assert train_rows["step"].to_list() == list(range(1, c.steps + 1))
        if c.gradient_clip is not None:
            assert (train_rows["grad_norm_after"] <= c.gradient_clip).all()
        assert json.loads((out / c.run_id / "config.json").read_text())["lr"] == c.lr
    assert not (out / PACKS_DIR).exists()


def test_finished_runs_are_skipped(reference, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    calls: list[list[str]] = []
    real = pyphase.train.run_together

    def counting(trainers, *args, **kwargs):
        calls.extend([c.run_id for c in t.configs] for t in trainers)
        return real(trainers, *args, **kwargs)

    monkeypatch.setattr(pyphase.train, "run_together", counting)
    stale = out / "smoke" / PACKS_DIR / "b4_k6_0123456789abcdef.ckpt"  # of a pack that no longer exists
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    res = run_experiment("smoke", device="cpu", out=out, progress=False)
    assert calls == [] and res.trained == [] and len(res.skipped) == 12
    assert not stale.parent.exists()  # every run finished: leftover checkpoints are removed
    assert res.summary.height == 12

    exp = load_experiment("smoke")
    gone = [exp.configs[1], exp.configs[4], exp.configs[7]]  # two of the b4 pack, one of the b8 pack
    for c in gone:
        (out / "smoke" / c.run_id / SUMMARY_FILE).unlink()
    leftover = out / "smoke" / gone[0].run_id / f".{SUMMARY_FILE}.tmp.12345"  # as a kill mid-write leaves it
    leftover.write_bytes(b"partial")
    res = run_experiment("smoke", device="cpu", out=out, progress=False)
    assert calls == [[gone[0].run_id, gone[1].run_id], [gone[2].run_id]]
    assert sorted(res.trained) == sorted(c.run_id for c in gone) and len(res.skipped) == 9
    assert res.summary["run_id"].to_list() == [c.run_id for c in exp.configs]  # plan order, no doubles
    assert not leftover.exists()
    # Retrained in smaller packs, the numbers are still the reference's (models of a pack are independent).
    assert_same_results(reference, out, ignore=("pack_size",))


def test_packs_side_by_side_give_the_same_results(reference, tmp_path, monkeypatch, capsys):
    """--packs-together 2 on the CPU (eager lockstep: nothing to gain there, but the same loop as
    the CUDA graph's) writes the reference's numbers; so does a group that does not fit in the GPU's
    memory, retried one pack at a time, with a warning."""
    seen: list[int] = []
    real = pyphase.train.run_together

    def recording(trainers, *args, **kwargs):
        seen.append(len(trainers))
        return real(trainers, *args, **kwargs)

    monkeypatch.setattr(pyphase.train, "run_together", recording)
    out = tmp_path / "together"
    res = run_experiment("smoke", device="cpu", out=out, progress=False, packs_together=2)
    assert seen == [2] and set(res.summary["packs_together"].to_list()) == {2}
    assert_same_results(reference, out, ignore=("packs_together",))

    def out_of_memory(trainers, *args, **kwargs):
        seen.append(len(trainers))
        if len(trainers) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real(trainers, *args, **kwargs)

    seen.clear()
    monkeypatch.setattr(pyphase.train, "run_together", out_of_memory)
    out = tmp_path / "oom"
    res = run_experiment("smoke", device="cpu", out=out, progress=False, packs_together=2)
    assert seen == [2, 1, 1] and set(res.summary["packs_together"].to_list()) == {1}
    assert "2 packs do not fit side by side in cpu's memory; training them one at a time" in capsys.readouterr().err
    assert_same_results(reference, out, ignore=("packs_together",))


def test_a_run_is_written_steps_first_and_summary_last(tmp_path, monkeypatch):
    """The summary marks a run finished, so it must be the last file to appear."""
    order: list[str] = []
    real = sweep.atomic_write

    def recording(path, write):
        real(path, write)
        order.append(path.name)

    monkeypatch.setattr(sweep, "atomic_write", recording)
    c = load_experiment("smoke").configs[0]
    from pyphase.data import load_corpus

    (res,) = pyphase.train.train_pack([c], load_corpus(None), progress=False)
    row = {**res.summary, "experiment": "smoke", "run_id": c.run_id, "seed": c.seed, "optimizer": c.optimizer,
           "git_commit": "x", "corpus": "x", "corpus_sha256": "x",
           "corpus_unigram_entropy": 3.0, "corpus_bigram_entropy": 2.0, "corpus_vocab_size": 20}
    sweep.write_run(tmp_path, c, row, res.steps)
    assert order == [STEPS_FILE, "config.json", SUMMARY_FILE]
    assert sweep.is_finished(tmp_path, c)


def test_a_run_finished_under_another_config_is_refused(reference, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    rid = load_experiment("smoke").configs[0].run_id
    cfg_file = out / "smoke" / rid / "config.json"
    rec = json.loads(cfg_file.read_text())
    rec["steps"] = 400
    cfg_file.write_text(json.dumps(rec))
    with pytest.raises(PyphaseError, match=f"{rid}.*different config.*steps 400 != 40"):
        run_experiment("smoke", device="cpu", out=out, progress=False)


def test_a_damaged_summary_is_a_one_line_error_before_any_training(reference, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    rid = load_experiment("smoke").configs[3].run_id
    summary = out / "smoke" / rid / SUMMARY_FILE
    summary.write_bytes(summary.read_bytes()[:100])
    monkeypatch.setattr(pyphase.train, "run_together", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(PyphaseError, match=f"{rid}/{SUMMARY_FILE}: unreadable Parquet .*remove its run folder") as e:
        run_experiment("smoke", device="cpu", out=out, progress=False)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def other_corpus(tmp_path_factory) -> Path:
    """A corpus file other than the synthetic corpus the reference sweep trained on (the same
    alphabet, another seed's chain, shorter)."""
    from pyphase.data import synthetic_corpus

    path = tmp_path_factory.mktemp("corpora") / "other.txt"
    path.write_text(synthetic_corpus(n_chars=60_000, seed=1).text, encoding="utf-8")
    return path


def count_steps(monkeypatch) -> list[int]:
    """Count PackTrainer.step calls from now on: a one-element list the caller reads after training."""
    count, real_step = [0], pyphase.train.PackTrainer.step

    def counting_step(self):
        count[0] += 1
        return real_step(self)

    monkeypatch.setattr(pyphase.train.PackTrainer, "step", counting_step)
    return count


def test_finished_runs_of_another_corpus_are_refused_before_any_training(reference, other_corpus, tmp_path,
                                                                         monkeypatch):
    """The corpus is part of what a finished run must match: rerunning a finished sweep with another
    --data (or adding seeds on it beside the finished ones) is a one-line error naming both corpora,
    raised before any training, not "0 runs trained" over the other corpus's results."""
    from pyphase.data import load_corpus

    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    ref, new = load_corpus(None), load_corpus(other_corpus)
    assert ref.sha256 != new.sha256
    monkeypatch.setattr(pyphase.train, "run_together", lambda *a, **k: pytest.fail("trained"))
    told = (f"holds a finished run trained on {ref.name} \\(sha256 {ref.sha256[:12]}\\), not {new.name} "
            f"\\(sha256 {new.sha256[:12]}\\); use another --out or remove it")
    for seeds in (None, 2):
        with pytest.raises(PyphaseError, match=told) as e:
            run_experiment("smoke", device="cpu", out=out, progress=False, data=other_corpus, seeds=seeds)
        assert "\n" not in str(e.value)
    assert finished_ids(out) == finished_ids(reference)  # nothing added beside them
    # the same corpus still finds every run finished
    res = run_experiment("smoke", device="cpu", out=out, progress=False)
    assert res.trained == [] and len(res.skipped) == 12
    # through the CLI: one line on stderr, exit 2
    cmd = [sys.executable, "-m", "pyphase", "train", "smoke", "--device", "cpu", "--out", str(out), "--data",
           str(other_corpus), "--no-progress"]
    run = subprocess.run(cmd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stderr
    # the reference corpus is PYPHASE_DATA's where that is set (the device's Tiny Shakespeare), else the synthetic one
    assert f"holds a finished run trained on {ref.name}" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_checkpoint_of_another_corpus_is_not_continued(other_corpus, tmp_path, monkeypatch, capsys):
    """A sweep interrupted midway and rerun with another --data trains the interrupted pack again from
    step 0 on the new corpus (one stderr line names both corpora), never continuing the weights
    trained on the first; its results equal the pack trained afresh on the new corpus."""
    from pyphase.data import load_corpus

    exp = load_experiment("smoke")
    out = tmp_path / "runs"
    real = pyphase.train.run_together

    def interrupt_first_pack(trainers, *args, **kwargs):
        kwargs["stop_after"] = 25  # train.py's test hook: KeyboardInterrupt after 25 steps (checkpoint at 20)
        return real(trainers, *args, **kwargs)

    monkeypatch.setattr(pyphase.train, "run_together", interrupt_first_pack)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("smoke", device="cpu", out=out, progress=False)
    first, second = pack(exp.configs)
    ckpt = out / "smoke" / PACKS_DIR / f"{pack_id(first)}.ckpt"
    assert ckpt.is_file() and finished_ids(out) == set()
    ref, new = load_corpus(None), load_corpus(other_corpus)

    real_step = pyphase.train.PackTrainer.step
    steps_run = count_steps(monkeypatch)
    monkeypatch.setattr(pyphase.train, "run_together", real)
    capsys.readouterr()
    res = run_experiment("smoke", device="cpu", out=out, progress=False, data=other_corpus)
    err = capsys.readouterr().err
    assert (f"{ckpt} was trained on {ref.name} (sha256 {ref.sha256[:12]}), this run's corpus is {new.name} "
            f"(sha256 {new.sha256[:12]}): training its pack from step 0") in err
    assert err.count("from step 0") == 1, err
    assert steps_run[0] == 40 + 40  # both packs from step 0: nothing continued
    assert len(res.trained) == 12 and (res.summary["corpus_sha256"] == new.sha256).all()
    assert not ckpt.exists()
    monkeypatch.setattr(pyphase.train.PackTrainer, "step", real_step)
    fresh = pyphase.train.train_pack(first, new, progress=False)
    for o in fresh:
        assert_frame_equal(pl.read_parquet(out / "smoke" / o.config.run_id / STEPS_FILE), o.steps, check_exact=True)


def test_a_damaged_steps_file_is_a_one_line_error_before_any_training(reference, tmp_path, monkeypatch):
    """A finished run's steps.parquet overwritten with garbage, emptied, or holding other columns is
    caught by `train` (its footer is read), not left for `results show` or `export` to trip over."""
    rid = load_experiment("smoke").configs[5].run_id
    monkeypatch.setattr(pyphase.train, "run_together", lambda *a, **k: pytest.fail("trained"))
    damages = {
        "garbage": (lambda p: p.write_bytes(b"garbage" * 100), "unreadable Parquet \\(.*\\); remove its run folder"),
        "empty": (lambda p: p.write_bytes(b""), "unreadable Parquet \\(.*\\); remove its run folder"),
        "missing": (lambda p: p.unlink(), "unreadable Parquet \\(.*\\); remove its run folder"),
        "columns": (lambda p: pl.read_parquet(p).drop("lr").write_parquet(p),
                    "holds the columns .*not the step columns.*; remove its run folder"),
    }
    for how, (damage, told) in damages.items():
        out = tmp_path / how
        shutil.copytree(reference, out)
        damage(out / "smoke" / rid / STEPS_FILE)
        with pytest.raises(PyphaseError, match=f"{rid}/{STEPS_FILE}: {told}") as e:
            run_experiment("smoke", device="cpu", out=out, progress=False)
        assert "\n" not in str(e.value), how


def test_only_checkpoints_that_can_never_be_resumed_are_removed(reference, tmp_path):
    """With every run of this plan finished, a checkpoint of finished runs, or an unreadable one, is
    removed; one that holds runs of another plan (another --seeds) that are not finished is kept, so
    that running that plan again resumes it."""
    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    packs = out / "smoke" / PACKS_DIR
    packs.mkdir()
    ids = [c.run_id for c in load_experiment("smoke").configs]
    other = [c.run_id for c in load_experiment("smoke", seeds=2).configs if c.seed == 1][:2]
    torch.save({"run_ids": ids[:2]}, packs / "done.ckpt")
    torch.save({"run_ids": [ids[0], other[0]]}, packs / "mixed.ckpt")
    (packs / "broken.ckpt").write_bytes(b"")
    run_experiment("smoke", device="cpu", out=out, progress=False)
    assert sorted(p.name for p in packs.iterdir()) == ["mixed.ckpt"]


def test_export_counts_the_runs_of_the_plan_that_no_folder_holds_yet(reference, tmp_path):
    """The sweep writes its plan (every run_id, all shards): runs of other shards, or of packs not
    started, count as unfinished, so `results list` and `export` do not call a part of a sweep whole."""
    from pyphase import results as res

    out = tmp_path / "runs"
    shutil.copytree(reference, out)
    plan = json.loads((out / "smoke" / sweep.PLAN_FILE).read_text())
    assert plan["run_ids"] == [c.run_id for c in load_experiment("smoke").configs]
    shutil.rmtree(out / "smoke" / plan["run_ids"][5])  # as if another shard had trained it elsewhere
    src = next(s for s in res.find_experiments(out) if s.experiment == "smoke")
    assert (src.runs, src.finished) == (12, 11)
    with pytest.raises(PyphaseError, match="has 1 unfinished runs"):
        res.export_experiment("smoke", out, tmp_path / "results")
    done = res.export_experiment("smoke", out, tmp_path / "results", allow_unfinished=True)
    assert json.loads((done / "provenance.json").read_text())["runs"]["unfinished"] == 1
    with pytest.raises(PyphaseError, match="that is where the run folders are"):
        res.export_experiment("smoke", out, out, allow_unfinished=True)


def test_resume_continues_an_interrupted_pack_from_its_checkpoint(reference, tmp_path, monkeypatch):
    """Deterministic interruption: the second pack is stopped after 25 of its 40 steps (checkpoints
    every 10), then the sweep is rerun. The rerun must train only the second pack, and only its
    last 20 steps, and end with the reference's numbers bit for bit."""
    exp = load_experiment("smoke")
    assert exp.checkpoint_every == 10 and exp.configs[0].steps == 40
    out = tmp_path / "runs"
    real = pyphase.train.run_together
    calls: list[list[str]] = []

    def interrupt_second_pack(trainers, *args, **kwargs):
        calls.extend([c.run_id for c in t.configs] for t in trainers)  # on the CPU: one pack a call
        if len(calls) == 2:
            kwargs["stop_after"] = 25  # train.py's test hook: KeyboardInterrupt after 25 steps
        return real(trainers, *args, **kwargs)

    monkeypatch.setattr(pyphase.train, "run_together", interrupt_second_pack)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("smoke", device="cpu", out=out, progress=False)
    first, second = pack(exp.configs)
    assert finished_ids(out) == {c.run_id for c in first}
    ckpt = out / "smoke" / PACKS_DIR / f"{pack_id(second)}.ckpt"
    assert ckpt.is_file()

    steps_run = count_steps(monkeypatch)
    calls.clear()
    monkeypatch.setattr(pyphase.train, "run_together", real)
    res = run_experiment("smoke", device="cpu", out=out, progress=False)
    assert sorted(res.trained) == sorted(c.run_id for c in second)
    assert steps_run[0] == 40 - 20  # continued from the step-20 checkpoint, not restarted
    assert not ckpt.exists()
    assert_same_results(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("trigger", ["checkpoint", "summary"])
def test_sigkilled_sweep_resumes_without_losing_or_doubling_rows(reference, tmp_path, trigger):
    """`pyphase train smoke` is SIGKILLed as soon as a pack checkpoint (or a run's summary) appears,
    then run again to completion; the results must equal the uninterrupted reference sweep."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "pyphase", "train", "smoke", "--device", "cpu", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pattern = f"{PACKS_DIR}/*.ckpt" if trigger == "checkpoint" else f"*/{SUMMARY_FILE}"
    deadline = time.monotonic() + 120
    try:
        while not list((out / "smoke").glob(pattern)):
            assert proc.poll() is None, f"sweep ended before it could be interrupted: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no checkpoint or summary appeared in time"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done_before = finished_ids(out)
    assert len(done_before) < 12, "the kill must land mid-sweep"

    rerun = subprocess.run(cmd + ["--json"], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    rows = json.loads(rerun.stdout)
    assert sorted(r["run_id"] for r in rows) == sorted(c.run_id for c in load_experiment("smoke").configs)
    # A kill between two summaries of one pack leaves its other runs to retrain in a smaller pack:
    # pack_size then differs, the numbers must not.
    assert_same_results(reference, out, ignore=("pack_size",))


LONG = """\
name = "long"
[model]
d_model = 32
n_layer = 2
n_head = 2
block_size = 32
[train]
steps = 4000
eval_interval = 2000
eval_windows = 2
checkpoint_every = 10
[grid]
batch_size = 4
lr = [1e-3, 3e-3]
gradient_clip = [1.0]
"""


def _state_and_parent(pid: int | str) -> tuple[str, int] | None:
    """A process's state letter and parent pid from Linux's /proc; None once it is gone."""
    try:
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None
    return state, int(ppid)


def _live_procs(marker: str, parent: int | None = None) -> list[int]:
    """Processes (not zombies) whose command line holds marker, and whose parent is `parent` if given."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        sp = _state_and_parent(d.name)
        if sp is not None and sp[0] != "Z" and marker in cmd and (parent is None or sp[1] == parent):
            found.append(int(d.name))
    return found


def _gone(pid: int) -> bool:
    sp = _state_and_parent(pid)
    return sp is None or sp[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc")
def test_torchrun_workers_stop_when_torchrun_is_sigkilled(tmp_path):
    """torchrun starts its workers in sessions of their own, so SIGKILL to torchrun alone used to leave
    them training (on the two-H200 host they finished the sweep beside the rerun meant to resume it).
    Each worker now watches its launcher (`sweep.stop_with_launcher`): killed mid-sweep, torchrun's
    workers stop within seconds, long before their 4,000 steps end, leaving their checkpoints."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    exp, out = tmp_path / "long.toml", tmp_path / "runs"
    exp.write_text(LONG)
    proc = subprocess.Popen([torchrun, "--nproc-per-node", "2", "-m", "pyphase", "train", str(exp), "--device", "cpu",
                             "--out", str(out), "--no-progress"], env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "long").glob(f"{PACKS_DIR}/*.ckpt"))) < 2:  # both ranks are training
            assert proc.poll() is None, f"torchrun ended early: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no checkpoints appeared in time"
            time.sleep(0.05)
        workers = _live_procs(str(out), parent=proc.pid)
        assert len(workers) == 2, workers
        proc.send_signal(signal.SIGKILL)  # torchrun only: its workers are in other sessions
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while not all(_gone(w) for w in workers):
            assert time.monotonic() < deadline, "the workers went on training without their launcher"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in _live_procs(str(out)):  # whatever is left of the sweep
            os.kill(w, signal.SIGKILL)
    assert not finished_ids(out, "long")  # stopped mid-run: the checkpoints are what a rerun resumes from
    assert list((out / "long").glob(f"{PACKS_DIR}/*.ckpt"))


# --------------------------------------------------------------------------- divergence
DIVERGING = """\
name = "div"
[model]
d_model = 16
n_layer = 1
n_head = 2
block_size = 16
[optim]
optimizer = "sgd"
[train]
steps = 12
eval_interval = 6
eval_windows = 2
[grid]
batch_size = 4
lr = [0.3, 1e4]
gradient_clip = "none"
"""


@pytest.mark.parametrize("max_pack", [None, 1])
def test_diverging_config_is_recorded_and_the_sweep_goes_on(tmp_path, max_pack):
    toml = tmp_path / "div.toml"
    toml.write_text(DIVERGING)
    res = run_experiment(toml, device="cpu", out=tmp_path / "runs", progress=False, max_pack=max_pack)
    assert res.summary.height == 2
    ok, bad = res.summary.sort("lr").to_dicts()
    assert bad["lr"] == 1e4 and bad["converged"] is False
    assert bad["diverged_step"] is not None and 0 <= bad["diverged_step"] < 12
    assert ok["diverged_step"] is None
    steps_ok = pl.read_parquet(tmp_path / "runs" / "div" / ok["run_id"] / STEPS_FILE)
    assert steps_ok.filter(pl.col("step") >= 1)["train_loss"].is_finite().all()
    # schema.py's convention: diverged_step steps were finite, step diverged_step + 1 was not
    steps_bad = pl.read_parquet(tmp_path / "runs" / "div" / bad["run_id"] / STEPS_FILE)
    loss = dict(steps_bad.filter(pl.col("step") >= 1).select("step", "train_loss").iter_rows())
    d = bad["diverged_step"]
    assert all(math.isfinite(loss[t]) for t in range(1, d + 1)) and not math.isfinite(loss[d + 1])


# --------------------------------------------------------------------------- torchrun sharding
@pytest.mark.slow
def test_torchrun_spreads_configs_over_processes(reference, tmp_path):
    """`torchrun --nproc-per-node 2 -m pyphase train smoke`: each rank trains its half, rank 0 waits
    at the barrier and reports all 12 runs, with the numbers of the one-process sweep."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "runs"
    r = subprocess.run([torchrun, "--nproc-per-node", "2", "-m", "pyphase", "train", "smoke", "--device", "cpu",
                        "--out", str(out), "--json", "--no-progress"],
                       env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)  # only rank 0 prints
    assert [row["run_id"] for row in rows] == [c.run_id for c in load_experiment("smoke").configs]
    assert {row["pack_size"] for row in rows} == {3}  # each rank packed its 3 configs per batch size
    assert_same_results(reference, out, ignore=("pack_size",))
