"""A diverged model is frozen, and the step's kernels skip it (`kernels.skipping_dead`).

What must hold: the other models' numbers do not change by a bit (each program works on one
model's rows), the skipped model's buffers are really left unwritten (so the work is saved), and
the step metrics after a divergence are NaN whether or not the kernels skip. On the CPU the kernels
run in Triton's interpreter (a subprocess, with every `torch.empty` buffer filled with a sentinel so
that an unwritten buffer shows); on CUDA a whole pack with a diverging model trains with skipping
on and off."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase import kernels
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import train_pack

pytest.importorskip("triton")

SENTINEL = 777.0

INTERPRETED = f"""
import json, sys, torch
_empty, _empty_like, _new_empty = torch.empty, torch.empty_like, torch.Tensor.new_empty
def poison(t):
    return t.fill_({SENTINEL}) if t.is_floating_point() else t
torch.empty = lambda *a, **kw: poison(_empty(*a, **kw))
torch.empty_like = lambda *a, **kw: poison(_empty_like(*a, **kw))
torch.Tensor.new_empty = lambda self, *a, **kw: poison(_new_empty(self, *a, **kw))
from pyphase import kernels
from pyphase.attention import causal_attention
from pyphase.head import head_ce
from pyphase.layernorm import embed_ln
from pyphase.mlp_block import mlp_block

def run(alive):
    g = torch.Generator().manual_seed(0)
    k, b, t, d, v = 3, 2, 16, 32, 11
    leaf = lambda *s, shift=0.0: (torch.randn(*s, generator=g) * 0.3 + shift).requires_grad_()
    emb = [leaf(k, v, d), leaf(k, t, d), leaf(k, d, shift=1.0), leaf(k, d)]
    att = [leaf(k, d, 3 * d), leaf(k, 3 * d)]
    blk = [leaf(k, d, d), leaf(k, d), leaf(k, d, shift=1.0), leaf(k, d), leaf(k, d, 4 * d), leaf(k, 4 * d),
           leaf(k, 4 * d, d), leaf(k, d), leaf(k, d, shift=1.0), leaf(k, d)]
    hw = leaf(k, d, v)
    leaves = emb + att + blk + [hw]
    idx = torch.randint(0, v, (k, b, t), generator=g)
    tgt = torch.randint(0, v, (k, b * t), generator=g)
    with kernels.skipping_dead(torch.tensor(alive)):
        x, h = embed_ln(idx, *emb, use_triton=True)
        y = causal_attention(h @ att[0], att[1], b, t, 2, use_triton=True)
        x, h2 = mlp_block(x, y @ blk[0], *blk[1:], use_triton=True)
        losses = head_ce(h2, hw, tgt, use_triton=True).mean(dim=1)
        grads = torch.autograd.grad(losses.sum(), leaves)
    return losses.detach(), h2.detach(), grads

out = []
for alive in json.loads(sys.argv[1]):
    ref_l, ref_h, ref_g = run([True] * len(alive))
    l, h, gr = run(alive)
    live = [i for i, a in enumerate(alive) if a]
    dead = [i for i, a in enumerate(alive) if not a]
    out.append({{
        "live_equal": all(bool(torch.equal(l[i], ref_l[i]) and torch.equal(h[i], ref_h[i])
                               and all(torch.equal(a[i], r[i]) for a, r in zip(gr, ref_g))) for i in live),
        "dead_loss": [float(l[i]) for i in dead], "dead_ref_loss": [float(ref_l[i]) for i in dead],
        "dead_h_unwritten": all(bool((h[i] == {SENTINEL}).all()) for i in dead),
        "ref_finite": bool(torch.isfinite(ref_l).all()),
    }})
print(json.dumps(out))
"""


@OLD_TRITON_INTERPRETER
def test_skipped_model_is_left_unwritten_and_the_others_keep_their_bits(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    cases = [[True, False, True], [False, True, True]]
    for alive, r in zip(cases, run_interpreted(INTERPRETED, cases)):
        assert r["ref_finite"], alive
        # every live model's loss, output and parameter gradients, bit for bit
        assert r["live_equal"], alive
        # the dead model's head never ran (its per-row losses are the buffer's sentinel) and the
        # MLP-half forward left its output unwritten; without skipping it computes a real loss
        assert r["dead_loss"] == [SENTINEL], (alive, r)
        assert r["dead_h_unwritten"], alive
        assert all(math.isfinite(x) and x != SENTINEL for x in r["dead_ref_loss"]), r


def test_alive_mask_is_the_packs_inside_and_all_true_outside(monkeypatch) -> None:
    alive = torch.tensor([True, False])
    ones = kernels.alive_mask(2, torch.device("cpu"))
    assert ones.dtype == torch.bool and ones.all() and kernels.alive_mask(2, torch.device("cpu")) is ones
    with kernels.skipping_dead(alive):
        assert kernels.alive_mask(2, torch.device("cpu")) is alive
        assert kernels.alive_mask(3, torch.device("cpu")).all()  # another pack's size: nothing skipped
    assert kernels.alive_mask(2, torch.device("cpu")) is ones
    monkeypatch.setenv("PYPHASE_SKIP_DEAD", "0")
    with kernels.skipping_dead(alive):
        assert kernels.alive_mask(2, torch.device("cpu")) is ones


SHAPE = ModelShape(d_model=32, n_layer=1, n_head=2, block_size=16)


def _pack(steps: int, b: int, shape: ModelShape) -> list[RunConfig]:
    # SGD at an absurd learning rate diverges within a few steps; the others train normally
    def c(lr: float, seed: int) -> RunConfig:
        return RunConfig(experiment="t", batch_size=b, lr=lr, gradient_clip=None, seed=seed, steps=steps,
                         optimizer="sgd", eval_interval=10, eval_windows=3, model=shape)
    return [c(1e-2, 0), c(1e9, 1), c(3e-2, 2)]


def test_metrics_after_a_divergence_are_nan_and_the_summary_stops_there() -> None:
    corpus = load_corpus(None)
    good, bad, _ = train_pack(_pack(12, 4, SHAPE), corpus, progress=False)
    d = bad.summary["diverged_step"]
    assert d is not None and d < 11 and not bad.summary["converged"]
    steps = bad.steps.filter(bad.steps["step"] >= 1)  # step 0 is the evaluation before training
    loss = steps["train_loss"].to_numpy()
    assert not np.isfinite(loss[d])  # the step that diverged is kept, as it was
    for col in ("train_loss", "grad_norm_before", "grad_norm_after"):
        assert np.isnan(steps[col].to_numpy()[d + 1:]).all(), col
    assert not steps["clipped"].to_numpy()[d + 1:].any()
    assert (steps["lr"].to_numpy()[d:] == 0).all()
    assert np.isfinite(good.steps.filter(good.steps["step"] >= 1)["train_loss"].to_numpy()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the skipping kernels run on CUDA")
def test_cuda_pack_with_a_diverged_model_gives_the_same_bits_with_and_without_skipping(monkeypatch, tmp_path) -> None:
    corpus = load_corpus(None)
    shape = ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64)  # head dim 32, as phase3a
    runs = {}
    for skip in ("1", "0"):
        monkeypatch.setenv("PYPHASE_SKIP_DEAD", skip)
        runs[skip] = train_pack(_pack(40, 16, shape), corpus, device="cuda", progress=False)
    # interrupted after the divergence and resumed from the checkpoint (which holds the alive mask)
    monkeypatch.setenv("PYPHASE_SKIP_DEAD", "1")
    ck = tmp_path / "pack.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_pack(_pack(40, 16, shape), corpus, device="cuda", checkpoint=ck, checkpoint_every=10, progress=False,
                   stop_after=25)
    runs["resumed"] = train_pack(_pack(40, 16, shape), corpus, device="cuda", checkpoint=ck, checkpoint_every=10,
                                 progress=False)
    on, off = runs["1"], runs["0"]
    assert on[1].summary["diverged_step"] is not None and on[1].summary["diverged_step"] < 20
    assert on[0].summary["diverged_step"] is None and on[2].summary["diverged_step"] is None
    for a, b in [*zip(on, off), *zip(on, runs["resumed"])]:
        for col in ("train_loss", "grad_norm_before", "grad_norm_after", "val_loss", "weight_norm", "lr"):
            np.testing.assert_array_equal(a.steps[col].to_numpy(), b.steps[col].to_numpy(), err_msg=col)
        for k in ("final_train_loss", "final_val_loss", "avg_grad_norm_before", "avg_clip_frequency",
                  "diverged_step", "converged"):
            assert a.summary[k] == b.summary[k] or (a.summary[k] != a.summary[k] and b.summary[k] != b.summary[k]), k
    # the survivors also equal the same pack in which nobody diverged (the second model at a sane
    # learning rate): each model's bits are its own
    calm = _pack(40, 16, shape)
    calm[1] = replace(calm[1], lr=1e-3)
    calm = train_pack(calm, corpus, device="cuda", progress=False)
    for i in (0, 2):
        np.testing.assert_array_equal(on[i].steps["train_loss"].to_numpy(), calm[i].steps["train_loss"].to_numpy())
