"""The packed training loop against plain PyTorch: same optimizer maths, same clipping, correct
telemetry, divergence isolation and exact resume (CPU, fp32)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from pyphase import _core
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.model import NanoTransformer, Shape
from pyphase.train import NUMERIC_SWITCHES, PackTrainer, can_run_together, run_together, train_pack

SHAPE = ModelShape(d_model=32, n_layer=1, n_head=2, block_size=16)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(None)


def cfg(lr=3e-3, clip=1.0, seed=0, steps=12, b=4, opt="adamw", **kw) -> RunConfig:
    return RunConfig(experiment="t", batch_size=b, lr=lr, gradient_clip=clip, seed=seed, steps=steps,
                     optimizer=opt, eval_interval=6, eval_windows=3, model=SHAPE, **kw)


def reference_run(c: RunConfig, corpus) -> tuple[torch.Tensor, list[float], list[float]]:
    """The same run written the plain way: NanoTransformer, torch.optim, clip_grad_norm_."""
    s = Shape.of(SHAPE, corpus.tokenizer.vocab_size)
    m = NanoTransformer(s, seed=c.seed)
    params = [m.p(n) for n, _ in s.param_shapes()]
    if c.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    offs = _core.batch_offsets(len(corpus.train), SHAPE.block_size, c.batch_size, [c.seed], 0, c.steps)
    losses, norms = [], []
    for step in range(c.steps):
        x, y = _core.gather_windows(corpus.train, offs[step, 0], SHAPE.block_size)
        _, loss = m(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        max_norm = c.gradient_clip if c.gradient_clip is not None else math.inf
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        opt.step()
        losses.append(loss.item())
    return torch.cat([p.detach().reshape(-1) for p in params]), losses, norms


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
@pytest.mark.parametrize("clip", [0.05, None])
def test_packed_step_equals_torch_optim_with_clip_grad_norm(corpus, opt, clip):
    c = cfg(opt=opt, clip=clip, lr=3e-3 if opt == "adamw" else 0.05)
    tr = PackTrainer([c], corpus, "cpu")
    for _ in range(c.steps):
        tr.step()
    ref_flat, ref_losses, ref_norms = reference_run(c, corpus)
    # The key bias gets an exactly-zero true gradient (softmax ignores a constant added to every
    # key score), so its gradient is round-off that Adam's m/sqrt(v) normalises to O(lr) steps:
    # it can only be bounded there. Everything else must match closely.
    flat = tr.model.flat[0]
    d = SHAPE.d_model
    a, _, _ = tr.model._slices["h0.attn_b"]
    key_bias = torch.zeros_like(flat, dtype=torch.bool)
    key_bias[a + d : a + 2 * d] = True
    torch.testing.assert_close(flat[~key_bias], ref_flat[~key_bias], rtol=1e-4, atol=2e-6)
    assert (flat[key_bias] - ref_flat[key_bias]).abs().max() <= c.lr * c.steps
    np.testing.assert_allclose(tr.state.loss[:, 0].numpy(), ref_losses, rtol=1e-5)
    np.testing.assert_allclose(tr.state.norm_before[:, 0].numpy(), ref_norms, rtol=1e-4)


def test_norm_after_clipping_is_the_clipped_norm(corpus):
    out = train_pack([cfg(clip=0.05), cfg(clip=1e9, seed=1)], corpus, progress=False)
    for o, c in zip(out, (0.05, 1e9)):
        s = o.steps.filter(o.steps["step"] > 0)
        before, after, clipped = s["grad_norm_before"].to_numpy(), s["grad_norm_after"].to_numpy(), s["clipped"].to_numpy()
        assert np.all(after <= c)
        assert np.array_equal(clipped, before > c)
        np.testing.assert_allclose(after[~clipped], before[~clipped], rtol=1e-6)
        np.testing.assert_allclose(after[clipped], c, rtol=1e-5)
    # clip 0.05 fires on every step here, and the summary's "after" is then the threshold, not "before"
    tight = out[0].summary
    assert tight["avg_clip_frequency"] == 1.0
    assert tight["avg_grad_norm_after"] < tight["avg_grad_norm_before"]
    assert out[1].summary["avg_clip_frequency"] == 0.0


def test_packed_runs_equal_separate_runs(corpus):
    cs = [cfg(lr=1e-3, seed=0), cfg(lr=1e-2, clip=None, seed=5), cfg(lr=3e-3, clip=0.1, seed=9, weight_decay=0.1)]
    packed = train_pack(cs, corpus, progress=False)
    for c, p in zip(cs, packed):
        alone = train_pack([c], corpus, progress=False)[0]
        for col in ("train_loss", "grad_norm_before", "grad_norm_after"):
            np.testing.assert_allclose(p.steps[col].to_numpy()[1:], alone.steps[col].to_numpy()[1:], rtol=2e-4)
        assert p.summary["final_val_loss"] == pytest.approx(alone.summary["final_val_loss"], rel=1e-4)


def test_diverging_config_is_recorded_and_does_not_disturb_the_others(corpus):
    good = cfg(lr=1e-3, seed=0)
    bad = cfg(lr=1e9, clip=None, seed=1, opt="sgd")
    good_sgd = replace(good, optimizer="sgd")
    out = train_pack([good_sgd, bad], corpus, progress=False)
    alone = train_pack([good_sgd], corpus, progress=False)[0]
    assert out[1].summary["diverged_step"] is not None
    assert out[1].summary["converged"] is False
    assert out[0].summary["diverged_step"] is None
    np.testing.assert_allclose(out[0].steps["train_loss"].to_numpy()[1:], alone.steps["train_loss"].to_numpy()[1:], rtol=2e-4)


def test_resume_from_checkpoint_equals_uninterrupted(corpus, tmp_path):
    cs = [cfg(lr=2e-3, seed=0, steps=20), cfg(lr=5e-3, clip=0.2, seed=1, steps=20)]
    full = train_pack(cs, corpus, progress=False)
    ck = tmp_path / "pack.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    assert ck.exists()
    resumed = train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
    for a, b in zip(full, resumed):
        assert a.steps.drop("val_loss").equals(b.steps.drop("val_loss"))
        np.testing.assert_array_equal(a.steps["val_loss"].to_numpy(), b.steps["val_loss"].to_numpy())
        for k in ("final_train_loss", "final_val_loss", "avg_grad_norm_before", "avg_clip_frequency"):
            assert a.summary[k] == b.summary[k]


def test_checkpoint_of_other_numerics_restarts_the_pack_instead_of_mixing_them(corpus, tmp_path, capsys):
    """A checkpoint written with other numerics (here fp32, resumed under bf16 autocast; in practice
    a changed default or switch between interruption and rerun) is not continued: the pack trains
    from step 0 and equals an uninterrupted run with the new numerics, and stderr says why. A
    checkpoint without the record (written before it existed) is treated the same way."""
    cs = [cfg(lr=2e-3, seed=0, steps=20), cfg(lr=5e-3, clip=0.2, seed=1, steps=20)]
    fresh = train_pack(cs, corpus, progress=False, precision="bf16")
    ck = tmp_path / "pack.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    assert torch.load(ck, weights_only=False)["numerics"] == "fp32"
    capsys.readouterr()
    resumed = train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, precision="bf16")
    assert "trained with numerics 'fp32', this run's are 'bf16 autocast': training its pack from step 0" in capsys.readouterr().err
    for a, b in zip(fresh, resumed):
        np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())
        assert b.summary["numerics"] == "bf16 autocast" and a.summary["final_val_loss"] == b.summary["final_val_loss"]
    # the same numerics resume (test_resume_from_checkpoint_equals_uninterrupted); an unrecorded one restarts
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    blob = torch.load(ck, weights_only=False)
    del blob["numerics"]
    torch.save(blob, ck)
    capsys.readouterr()
    again = train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
    assert "(not recorded)" in capsys.readouterr().err
    assert again[0].summary["numerics"] == "fp32"


def test_checkpoint_of_other_settings_or_unreadable_restarts_the_pack(corpus, tmp_path, capsys):
    """A checkpoint records each run's whole config: one trained with other settings that keep the
    run_ids (weight decay, steps, ...) is not continued, nor is an unreadable one (truncated or
    emptied); the pack trains from step 0, equal to a fresh run of the new settings, and stderr says
    why in one line. A checkpoint without the record (before session 48) restarts too."""
    cs = [cfg(lr=2e-3, seed=0, steps=20), cfg(lr=5e-3, clip=0.2, seed=1, steps=20)]
    ck = tmp_path / "pack.ckpt"

    def interrupted() -> None:
        ck.unlink(missing_ok=True)
        with pytest.raises(KeyboardInterrupt):
            train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)

    def damage(how: str) -> None:
        if how == "truncated":
            ck.write_bytes(ck.read_bytes()[:1000])
        elif how == "empty":
            ck.write_bytes(b"")
        elif how == "unrecorded":
            blob = torch.load(ck, weights_only=False)
            del blob["configs"]
            torch.save(blob, ck)
        elif how == "no state":
            blob = torch.load(ck, weights_only=False)
            blob["state"] = []
            torch.save(blob, ck)

    cases = [
        ([replace(c, weight_decay=0.5) for c in cs], None, "other settings (adamw_b4_lr0.002_clip1_s0: weight_decay 0.01 -> 0.5)"),
        ([replace(c, steps=25) for c in cs], None, "steps 20 -> 25"),
        ([replace(c, model=ModelShape(d_model=8, n_layer=1, n_head=2, block_size=16)) for c in cs], None, "model "),
        (cs, "truncated", "cannot be read ("),
        (cs, "empty", "cannot be read (EOFError"),
        (cs, "unrecorded", "its configs are not recorded"),
        (cs, "no state", "holds no state "),
    ]
    for new, how, told in cases:
        interrupted()
        damage(how)
        capsys.readouterr()
        again = train_pack(new, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
        err = capsys.readouterr().err
        assert told in err and err.count("training its pack from step 0") == 1, err
        fresh = train_pack(new, corpus, progress=False)
        for a, b in zip(fresh, again):
            np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())
    # an I/O error is not a damaged file: raised, the checkpoint is left for a later run
    ck.unlink()
    ck.mkdir()
    with pytest.raises(IsADirectoryError):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)


def test_checkpoint_of_another_numerics_revision_restarts_the_pack(corpus, tmp_path, capsys, monkeypatch):
    """A default that changes the bits keeps the `numerics` label (it names only the switches that are
    set), so a checkpoint also records NUMERICS_REVISION: one written by code of another revision, or
    without the record, is not continued (the pack trains from step 0, equal to a fresh run, and
    stderr says why), while one of this revision resumes."""
    from pyphase import train as tr

    cs = [cfg(lr=2e-3, seed=0, steps=20), cfg(lr=5e-3, clip=0.2, seed=1, steps=20)]
    fresh = train_pack(cs, corpus, progress=False)
    ck = tmp_path / "pack.ckpt"
    for written, told in ((tr.NUMERICS_REVISION - 1, f"revision {tr.NUMERICS_REVISION - 1}, "), (None, "(not recorded)")):
        ck.unlink(missing_ok=True)  # the run before left one at its end
        with pytest.raises(KeyboardInterrupt):
            train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
        blob = torch.load(ck, weights_only=False)
        assert blob["numerics_revision"] == tr.NUMERICS_REVISION and blob["numerics"] == "fp32"
        if written is None:
            del blob["numerics_revision"]
        else:
            blob["numerics_revision"] = written
        # the weights of a resumed run would show: a restart must not read them
        blob["flat"] = torch.full_like(blob["flat"], float("nan"))
        torch.save(blob, ck)
        capsys.readouterr()
        again = train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
        err = capsys.readouterr().err
        assert told in err and f"this code's is {tr.NUMERICS_REVISION}" in err and "from step 0" in err
        for a, b in zip(fresh, again):
            np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())
    # code whose revision was bumped after the interruption restarts too; the same revision resumes
    ck.unlink()
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    monkeypatch.setattr(tr, "NUMERICS_REVISION", tr.NUMERICS_REVISION + 1)
    capsys.readouterr()
    train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
    assert f"this code's is {tr.NUMERICS_REVISION}" in capsys.readouterr().err
    ck.unlink()
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    capsys.readouterr()
    resumed = train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False)
    assert "from step 0" not in capsys.readouterr().err
    for a, b in zip(fresh, resumed):
        np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path (bf16 Triton kernels, CUDA graph) needs CUDA")
@pytest.mark.parametrize("residual", ["", "fp32", "bf16grad"])
def test_cuda_training_repeats_bit_for_bit_and_resumes_exactly(corpus, tmp_path, monkeypatch, residual):
    """On CUDA, with the Triton kernels and the step captured in a CUDA graph: the same pack trained
    twice gives the same bits (every reduction is in a fixed order, no atomic adds), and a run
    interrupted and resumed from its checkpoint equals the uninterrupted one; with the default (the
    bf16 residual stream), the fp32 stream and gradient, and the fp32 stream with a bf16 gradient
    (the default of sessions 16-44)."""
    monkeypatch.setenv("PYPHASE_RESIDUAL", residual)
    shape = ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64)  # head dim 32, as phase3a
    cs = [replace(cfg(lr=lr, clip=clip, seed=i, steps=40, b=16), model=shape)
          for i, (lr, clip) in enumerate([(3e-3, 1.0), (1e-2, 0.1), (2e-3, None)])]
    runs = [train_pack(cs, corpus, device="cuda", progress=False) for _ in range(2)]
    ck = tmp_path / "pack.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, corpus, device="cuda", checkpoint=ck, checkpoint_every=10, progress=False, stop_after=25)
    runs.append(train_pack(cs, corpus, device="cuda", checkpoint=ck, checkpoint_every=10, progress=False))
    first = runs[0]
    assert all(o.summary["converged"] for o in first)  # trained, not diverged: a real comparison
    for other in runs[1:]:
        for a, b in zip(first, other):
            for col in ("train_loss", "grad_norm_before", "grad_norm_after", "val_loss"):
                np.testing.assert_array_equal(a.steps[col].to_numpy(), b.steps[col].to_numpy(), err_msg=col)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path (bf16 Triton kernels, CUDA graph) needs CUDA")
@pytest.mark.parametrize("linear_mode", ["", "torch"])
def test_cuda_config_trains_to_the_same_bits_alone_and_in_a_pack(corpus, monkeypatch, linear_mode):
    """A config's numbers do not depend on its pack's other configs: trained alone (K = 1) or in a
    pack of 3, the same bits at every step. The backward kernels' programs aimed at are shrunk so
    that rows-per-partial-sum choices made from K would differ at this size (they did before
    kernels.PARTIALS_PACK; tests/test_pack_independence.py checks the kernels one by one). Also with
    PYPHASE_LINEAR=torch, where the QKV projection is a plain product (`linear.project`)."""
    from pyphase import kernels, mlp

    monkeypatch.setenv("PYPHASE_LINEAR", linear_mode)
    monkeypatch.setattr(kernels, "BACKWARD_PROGRAMS", 16)
    monkeypatch.setattr(mlp, "MIN_SPAN", 16)
    shape = ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64)
    cs = [replace(cfg(lr=lr, clip=clip, seed=i, steps=30, b=16), model=shape)
          for i, (lr, clip) in enumerate([(3e-3, 1.0), (1e-2, 0.1), (2e-3, None)])]
    packed = train_pack(cs, corpus, device="cuda", progress=False)
    assert all(o.summary["converged"] for o in packed)
    for c, p in zip(cs, packed, strict=True):
        alone = train_pack([c], corpus, device="cuda", progress=False)[0]
        for col in ("train_loss", "grad_norm_before", "grad_norm_after", "clipped", "val_loss", "weight_norm"):
            np.testing.assert_array_equal(alone.steps[col].to_numpy(), p.steps[col].to_numpy(), err_msg=f"{c.run_id} {col}")


def _packs_together_equal_packs_alone(corpus, tmp_path, device: str, shape: ModelShape) -> None:
    """Two packs of different batch sizes (and evaluation intervals) trained by `run_together`:
    uninterrupted; interrupted and resumed from their checkpoints; resumed with one checkpoint
    lost (different starts: one after the other). Each time, every run equals its pack trained
    alone, bit for bit."""
    packs = [[replace(cfg(lr=lr, seed=i, steps=30, b=b), model=shape, eval_interval=ev) for i, lr in enumerate(lrs)]
             for b, ev, lrs in ((4, 6, (3e-3, 1e-2)), (8, 10, (2e-3, 5e-3, 1e-3)))]
    alone = [train_pack(p, corpus, device=device, progress=False) for p in packs]

    def together(ckpts, **kw):
        trainers = [PackTrainer(p, corpus, device) for p in packs]
        return run_together(trainers, ckpts, checkpoint_every=5, progress=False, **kw)

    def same(results):
        for outs, refs in zip(results, alone, strict=True):
            for o, r in zip(outs, refs, strict=True):
                assert o.config == r.config
                for col in ("train_loss", "grad_norm_before", "grad_norm_after", "clipped", "val_loss", "weight_norm"):
                    np.testing.assert_array_equal(o.steps[col].to_numpy(), r.steps[col].to_numpy(), err_msg=col)
                assert o.summary["final_val_loss"] == r.summary["final_val_loss"]

    same(together([None, None]))
    ckpts = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    with pytest.raises(KeyboardInterrupt):
        together(ckpts, stop_after=12)
    assert all(c.exists() for c in ckpts)
    same(together(ckpts))
    for c in ckpts:  # the sweep deletes them once the runs are written
        c.unlink()
    with pytest.raises(KeyboardInterrupt):
        together(ckpts, stop_after=17)
    ckpts[0].unlink()  # as if killed between the two packs' checkpoint writes
    same(together(ckpts))


def test_packs_trained_together_equal_packs_trained_alone(corpus, tmp_path):
    _packs_together_equal_packs_alone(corpus, tmp_path, "cpu", SHAPE)


def test_packs_run_together_only_in_lockstep(corpus):
    a, b = PackTrainer([cfg(b=4)], corpus), PackTrainer([cfg(b=8)], corpus)
    assert can_run_together([a, b], [0, 0])
    assert not can_run_together([a, b], [0, 5])  # resumed from checkpoints of different steps
    assert not can_run_together([a], [0])
    assert not can_run_together([a, PackTrainer([cfg(b=8, steps=20)], corpus)], [0, 0])
    with pytest.raises(ValueError, match="checkpoint"):
        run_together([a, b], [None])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path (bf16 Triton kernels, CUDA graph) needs CUDA")
def test_cuda_packs_trained_together_in_one_graph_equal_packs_trained_alone(corpus, tmp_path):
    """On CUDA the packs' steps share one CUDA graph, each on its own stream: same bits as alone."""
    _packs_together_equal_packs_alone(corpus, tmp_path, "cuda", ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64))


def test_checkpoint_blob_is_a_snapshot_the_training_does_not_change(corpus):
    """Checkpoints are written by a thread while the training goes on: the blob must not share
    memory with the live state (on the CPU `.cpu()` would return the very tensors)."""
    tr = PackTrainer([cfg()], corpus)
    tr.step()
    blob = tr.checkpoint_blob()
    flat, m = tr.model.flat.clone(), tr.state.m.clone()
    for _ in range(3):
        tr.step()
    assert not torch.equal(tr.model.flat, flat)
    assert torch.equal(blob["flat"], flat) and torch.equal(blob["state"]["m"], m) and int(blob["state"]["t"]) == 1


def test_summary_has_the_seed_columns_and_evaluations(corpus):
    from pyphase.schema import SEED_SUMMARY_COLUMNS, STEP_COLUMNS

    (o,) = train_pack([cfg()], corpus, progress=False)
    assert set(SEED_SUMMARY_COLUMNS) <= set(o.summary)
    assert o.steps.columns == STEP_COLUMNS
    evals = o.steps.filter(o.steps["val_loss"].is_not_null())["step"].to_list()
    assert evals == [0, 6, 12]
    assert o.summary["final_val_loss"] == o.steps["val_loss"].drop_nulls()[-1]
    shape = Shape.of(SHAPE, corpus.tokenizer.vocab_size)
    assert o.summary["n_params"] == sum(p.numel() for p in NanoTransformer(shape).parameters())


def test_evaluations_queued_during_training_read_back_the_values_evaluate_gives(corpus):
    """The loop queues its evaluations without reading them back (`_evaluate_queued`): they are
    read back at the checkpoint and at the end, equal to what `evaluate` returns at that step."""
    a, b = PackTrainer([cfg(seed=0), cfg(seed=1)], corpus), PackTrainer([cfg(seed=0), cfg(seed=1)], corpus)
    expected = []
    for n in range(1, 13):
        a.step()
        b.step()
        due = a.end_of_step(n, None, 1000)
        assert not due
        if n % 6 == 0:
            expected.append((n, *b.evaluate()))
    assert all(isinstance(v, torch.Tensor) for _, v, _ in a.state.evals)  # queued, not read back
    blob = a.checkpoint_blob()
    assert blob["evals"] == expected
    assert all(isinstance(v, list) and isinstance(w, list) for _, v, w in a.state.evals)
    assert [e[0] for e in a.state.evals] == [6, 12] and len(expected[0][1]) == 2


def test_summary_names_the_numerics_and_the_switches_that_change_them(corpus, monkeypatch):
    for k in ("PYPHASE_RESIDUAL", "PYPHASE_MLP"):
        monkeypatch.delenv(k, raising=False)
    assert train_pack([cfg(steps=2)], corpus, progress=False)[0].summary["numerics"] == "fp32"
    monkeypatch.setenv("PYPHASE_RESIDUAL", "bf16")
    monkeypatch.setenv("PYPHASE_MLP", "torch")
    # without autocast the residual switch does nothing, and is not named
    assert train_pack([cfg(steps=2)], corpus, progress=False)[0].summary["numerics"] == "fp32; PYPHASE_MLP=torch"
    (o,) = train_pack([cfg(steps=2)], corpus, progress=False, precision="bf16")
    assert o.summary["numerics"] == "bf16 autocast; PYPHASE_MLP=torch; PYPHASE_RESIDUAL=bf16"


def test_residual_default_is_bf16_on_cuda_uncompiled_and_named_by_its_effect(monkeypatch):
    from pyphase.model import residual_mode
    from pyphase.train import numerics

    monkeypatch.delenv("PYPHASE_RESIDUAL", raising=False)
    for k in NUMERIC_SWITCHES:
        monkeypatch.delenv(k, raising=False)
    assert residual_mode("cuda", False) == "bf16"
    assert residual_mode("cuda", True) == "fp32"  # the compiled path keeps its own numerics
    assert residual_mode("cpu", False) == "fp32"  # no kernels on the CPU
    assert residual_mode("cuda") == "bf16"  # not compiling now
    assert numerics(True, "bf16") == "bf16 autocast; PYPHASE_RESIDUAL=bf16"
    assert numerics(True, "bf16grad") == "bf16 autocast; PYPHASE_RESIDUAL=bf16grad"
    assert numerics(False, "fp32") == "fp32"
    monkeypatch.setenv("PYPHASE_RESIDUAL", "fp32")
    assert residual_mode("cuda", False) == "fp32"
    # the label names the numbers, not the switch: fp32 set by hand reads as the pre-session-16 default
    assert numerics(True, "fp32") == "bf16 autocast"
    monkeypatch.setenv("PYPHASE_RESIDUAL", "BF16")
    assert residual_mode("cpu", False) == "bf16"


def test_unknown_residual_mode_is_a_clear_error(corpus, monkeypatch):
    from pyphase.errors import PyphaseError

    monkeypatch.setenv("PYPHASE_RESIDUAL", "fp16")
    with pytest.raises(PyphaseError, match="PYPHASE_RESIDUAL='fp16': expected one of fp32, bf16, bf16grad"):
        PackTrainer([cfg()], corpus)
    monkeypatch.setenv("PYPHASE_RESIDUAL", "bf16grad")
    with pytest.raises(PyphaseError, match="bf16grad works only uncompiled"):
        PackTrainer([cfg()], corpus, compile=True)
    (o,) = train_pack([cfg(steps=2)], corpus, progress=False, precision="bf16")
    assert o.summary["numerics"].endswith("PYPHASE_RESIDUAL=bf16grad")


def test_a_split_shorter_than_one_window_is_an_error_naming_it(tmp_path):
    """PackTrainer itself (the library path under train and calibrate) checks both splits before
    drawing batches: the Rust batcher's ValueError named neither the split nor the file."""
    from pyphase.errors import PyphaseError

    p = tmp_path / "c.txt"
    p.write_text("abcdefghij" * 20, encoding="utf-8")  # 180 + 20 characters; a window of block 16 needs 17
    with pytest.raises(PyphaseError, match=f"corpus {p}: validation split has 10 characters, fewer than the 17 "):
        PackTrainer([cfg()], load_corpus(p, valid_fraction=0.05), "cpu")
    with pytest.raises(PyphaseError, match=f"corpus {p}: train split has 10 characters, fewer than the 17 "):
        PackTrainer([cfg()], load_corpus(p, valid_fraction=0.95), "cpu")
    tr = PackTrainer([cfg(steps=1)], load_corpus(p, valid_fraction=0.085), "cpu")  # 17 valid characters: one window
    tr.step()
    assert tr.val_x.shape == (1, SHAPE.block_size)


def test_mixed_pack_is_rejected(corpus):
    with pytest.raises(ValueError, match="differ"):
        PackTrainer([cfg(b=4), cfg(b=8)], corpus)


def test_compiled_packs_of_two_batch_sizes_share_one_graph_and_match_eager(corpus):
    """torch.compile path (what CUDA runs with PYPHASE_COMPILE=whole), here on the CPU: packs that
    differ only in batch size reuse one compiled graph (batch dimension dynamic), and train as the uncompiled trainer does."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _compiled_trains_as_eager(corpus, SHAPE)
    assert counters["stats"]["unique_graphs"] == 1


def _compiled_trains_as_eager(corpus, shape) -> None:  # type: ignore[no-untyped-def]
    """Packs of batch size 4, then 8 (same shape): 3 compiled steps equal 3 uncompiled ones."""
    for b in (4, 8):
        configs = [replace(cfg(b=b, steps=3, seed=s, lr=1e-3 * (s + 1)), model=shape) for s in range(2)]
        compiled = PackTrainer(configs, corpus, "cpu", compile=True)
        eager = PackTrainer(configs, corpus, "cpu", compile=False)
        start = eager.model.flat.clone()
        for _ in range(3):
            compiled.step()
            eager.step()
        torch.testing.assert_close(compiled.state.loss, eager.state.loss, rtol=1e-5, atol=1e-5)
        # AdamW normalises each coordinate's step, so fp32 reordering in a near-zero gradient can move
        # that one coordinate by up to ~lr: compare the whole update instead, per model.
        moved = (eager.model.flat - start).norm(dim=1)
        gap = (compiled.model.flat - eager.model.flat).norm(dim=1)
        assert bool((gap < 1e-3 * moved).all()), (gap, moved)


@pytest.mark.parametrize("mode, graphs", [("whole", 1), ("regional", 2), ("blocks", 1)])
def test_compile_modes_match_eager_and_reuse_their_graphs(corpus, monkeypatch, mode, graphs):
    """PYPHASE_COMPILE: the whole forward pass as one graph, or one graph of a transformer block
    (every block has the same signature) plus one of the head: same training as the uncompiled
    trainer, and both batch sizes reuse the same graphs."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    monkeypatch.setenv("PYPHASE_COMPILE", mode)
    torch._dynamo.reset()
    counters.clear()
    _compiled_trains_as_eager(corpus, replace(SHAPE, n_layer=2))
    assert counters["stats"]["unique_graphs"] == graphs
    assert counters["stats"]["unique_graphs"] == counters["frames"]["ok"]


def test_unknown_compile_mode_is_rejected(corpus, monkeypatch):
    monkeypatch.setenv("PYPHASE_COMPILE", "everything")
    with pytest.raises(ValueError, match="PYPHASE_COMPILE"):
        PackTrainer([cfg()], corpus, "cpu", compile=True)


def test_converged_needs_both_final_losses_below_the_uniform_guess():
    from pyphase.train import converged

    ln65 = math.log(65)
    assert converged(-1, 2.5, 2.6, 65)
    assert not converged(120, 2.5, 2.6, 65)  # diverged at step 120
    assert not converged(-1, 3.98, 7.15, 65)  # training loss fine, validation blew up at the end
    assert not converged(-1, ln65 - 0.05, 2.6, 65)  # still at the uniform guess
    assert not converged(-1, 2.5, math.nan, 65)


def test_checkpoint_of_another_corpus_restarts_the_pack(corpus, tmp_path, capsys):
    """A checkpoint records the corpus it was trained on (name and sha256): resumed on another corpus
    (a rerun with another --data), or without the record (written before it existed), the pack
    trains from step 0, equal to a fresh run on the new corpus, and stderr says why in one line."""
    from pyphase.data import synthetic_corpus

    text = tmp_path / "other.txt"
    text.write_text(synthetic_corpus(n_chars=20_000, seed=1).text, encoding="utf-8")
    other = load_corpus(text)
    cs = [cfg(lr=2e-3, seed=0, steps=20), cfg(lr=5e-3, clip=0.2, seed=1, steps=20)]
    fresh = train_pack(cs, other, progress=False)
    ck = tmp_path / "pack.ckpt"
    for recorded in (True, False):
        ck.unlink(missing_ok=True)
        with pytest.raises(KeyboardInterrupt):
            train_pack(cs, corpus, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
        if recorded:
            told = f"was trained on {corpus.name} (sha256 {corpus.sha256[:12]}), "
        else:
            blob = torch.load(ck, weights_only=False)
            blob.pop("corpus_sha256", None)
            torch.save(blob, ck)
            told = "was trained on a corpus it does not record"
        capsys.readouterr()
        again = train_pack(cs, other, checkpoint=ck, checkpoint_every=5, progress=False)
        err = capsys.readouterr().err
        assert told in err and f"this run's corpus is {other.name} (sha256 {other.sha256[:12]})" in err, err
        assert err.count("training its pack from step 0") == 1, err
        for a, b in zip(fresh, again):
            np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())
    # on the same corpus it resumes (test_resume_from_checkpoint_equals_uninterrupted): no restart
    ck.unlink()
    with pytest.raises(KeyboardInterrupt):
        train_pack(cs, other, checkpoint=ck, checkpoint_every=5, progress=False, stop_after=13)
    blob = torch.load(ck, weights_only=False)
    assert (blob["corpus"], blob["corpus_sha256"]) == (other.name, other.sha256)
    capsys.readouterr()
    resumed = train_pack(cs, other, checkpoint=ck, checkpoint_every=5, progress=False)
    assert "from step 0" not in capsys.readouterr().err
    for a, b in zip(fresh, resumed):
        np.testing.assert_array_equal(a.steps["train_loss"].to_numpy(), b.steps["train_loss"].to_numpy())


@pytest.mark.parametrize("packs", [1, 2])
def test_the_step_bar_moves_every_step_on_the_cpu(corpus, monkeypatch, packs):
    """On the CPU a step of a phase pack takes seconds, so the progress bar advances after every step
    (it used to move every 50 steps only: `0/5000` for minutes)."""
    import tqdm.auto

    seen: list[int] = []

    class Recording(tqdm.auto.tqdm):
        def update(self, n=1):
            out = super().update(n)
            seen.append(self.n)
            return out

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    trainers = [PackTrainer([cfg(steps=7, b=4 * (i + 1))], corpus) for i in range(packs)]
    run_together(trainers, [None] * packs, progress=True)
    assert seen == list(range(1, 8))  # one bar for packs in lockstep


def test_more_eval_windows_than_the_validation_split_holds_is_said_on_stderr(corpus, capsys):
    held = len(_core.eval_offsets(len(corpus.valid), SHAPE.block_size))
    capsys.readouterr()
    PackTrainer([cfg(steps=2)], corpus, device="cpu")  # 3 windows: fewer than the split holds
    assert "eval_windows" not in capsys.readouterr().err
    t = PackTrainer([RunConfig(experiment="t", batch_size=4, lr=3e-3, gradient_clip=1.0, seed=0, steps=2,
                               eval_interval=2, eval_windows=held + 5, model=SHAPE)], corpus, device="cpu")
    assert len(t.val_x) == held
    assert (f"eval_windows = {held + 5} but the validation split ({len(corpus.valid):,} tokens) holds {held} windows"
            in capsys.readouterr().err)
