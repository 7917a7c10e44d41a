"""The working copy of a pack's weights (pyphase.packing): the trainer computes the same bits with it
as with the weights rounded where they are used, on the CPU (torch copies), in Triton's
interpreter and on CUDA (its two kernels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.model import PackedNanoTransformer, Shape
from pyphase.packing import AUTOCAST_PARAMS, WorkingCopy, copied
from pyphase.train import PackTrainer

SHAPE = ModelShape(d_model=32, n_layer=2, n_head=2, block_size=16)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(None)


def _configs(steps: int, b: int = 4, shape: ModelShape = SHAPE) -> list[RunConfig]:
    return [RunConfig(experiment="t", batch_size=b, lr=lr, gradient_clip=1.0, seed=i, steps=steps, model=shape,
                      eval_interval=steps, eval_windows=2) for i, lr in enumerate((3e-3, 1e-2, 3e-2))]


def test_copied_parameters_are_the_block_weights_autocast_rounds():
    names = [n for n, _ in Shape.of(SHAPE, 65).param_shapes()]
    per_block = ["attn_w", "attn_b", "proj_w", "fc_w", "fc_b", "fc2_w"]
    assert sorted(per_block) == sorted(AUTOCAST_PARAMS)
    assert [n for n in names if copied(n)] == [f"h{i}.{p}" for i in range(SHAPE.n_layer) for p in per_block]
    assert not any(copied(n) for n in ("wte", "wpe", "head_w", "lnf_w", "h0.ln1_w", "h1.proj_b", "h0.fc2_b"))


def test_working_copy_holds_the_rounded_weights_in_contiguous_blocks_and_gathers_gradients_in_flat_order():
    m = PackedNanoTransformer(Shape.of(SHAPE, 65), seeds=[0, 1, 2])
    wc = WorkingCopy(m, torch.bfloat16)
    wc.refresh()
    for name, leaf, own in zip(m.names, wc.leaves, m.leaves):
        if copied(name):
            assert leaf.dtype == torch.bfloat16 and leaf.is_contiguous() and leaf.is_leaf and leaf.requires_grad
            assert leaf.data_ptr() % 16 == 0
            assert torch.equal(leaf, own.detach().to(torch.bfloat16))
        else:
            assert leaf is own
    # gradients: copied ones in bf16, the others in fp32, each a distinct value pattern
    grads = []
    for i, leaf in enumerate(wc.leaves):
        g = torch.arange(leaf.numel(), dtype=torch.float32).reshape(leaf.shape) * 0.5 + i
        grads.append(g.to(leaf.dtype))
    out = wc.gather(grads)
    assert out.dtype == torch.float32 and out.shape == m.flat.shape
    assert torch.equal(out, m.flat_grad([g.float() for g in grads]))


def _train(corpus, steps: int, device: str, working: bool, monkeypatch, shape: ModelShape = SHAPE, b: int = 4):
    monkeypatch.setenv("PYPHASE_WORKING_COPY", "1" if working else "0")
    tr = PackTrainer(_configs(steps, b, shape), corpus, device, precision="bf16", cuda_graph=False)
    assert (tr.working is not None) == working
    for _ in range(steps):
        tr.step()
    st = tr.state
    return [x.detach().cpu().clone() for x in (st.loss, st.norm_before, st.norm_after, tr.model.flat, st.m, st.v)]


def test_cpu_training_under_autocast_gives_the_same_bits_with_the_working_copy(corpus, monkeypatch):
    a = _train(corpus, 6, "cpu", True, monkeypatch)
    b = _train(corpus, 6, "cpu", False, monkeypatch)
    for x, y, what in zip(a, b, ("loss", "norm before", "norm after", "parameters", "m", "v")):
        assert torch.equal(x, y), what
    assert np.isfinite(a[0].numpy()).all()


def test_fp32_training_has_no_working_copy(corpus, monkeypatch):
    monkeypatch.delenv("PYPHASE_WORKING_COPY", raising=False)
    assert PackTrainer(_configs(2), corpus, "cpu").working is None  # CPU default: fp32, no autocast
    assert PackTrainer(_configs(2), corpus, "cpu", precision="bf16").working is not None


INTERPRETED = r"""
import json, sys, torch
from pyphase.model import PackedNanoTransformer, Shape
from pyphase.config import ModelShape
from pyphase import packing
out = []
for seeds in json.loads(sys.argv[1]):
    m = PackedNanoTransformer(Shape.of(ModelShape(d_model=32, n_layer=2, n_head=2, block_size=16), 65), seeds)
    wc = packing.WorkingCopy(m, torch.bfloat16)
    wc._use_kernels = lambda: True  # the Triton kernels, in the interpreter
    wc.refresh()
    ok_refresh = all(torch.equal(l, o.detach().to(torch.bfloat16)) for n, l, o in zip(m.names, wc.leaves, m.leaves)
                     if packing.copied(n))
    grads = [(torch.randn(l.shape, generator=torch.Generator().manual_seed(i)) * 3).to(l.dtype)
             for i, l in enumerate(wc.leaves)]
    ok_gather = torch.equal(wc.gather(grads), m.flat_grad([g.float() for g in grads]))
    out.append([ok_refresh, ok_gather])
print(json.dumps(out))
"""


def test_the_two_kernels_in_the_interpreter_equal_torch(run_interpreted):
    assert run_interpreted(INTERPRETED, [[0], [1, 2, 3]]) == [[True, True], [True, True]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the kernels and the bf16 step need CUDA")
def test_cuda_training_gives_the_same_bits_with_the_working_copy(corpus, monkeypatch):
    shape = ModelShape(d_model=128, n_layer=2, n_head=4, block_size=64)
    a = _train(corpus, 8, "cuda", True, monkeypatch, shape, 8)
    b = _train(corpus, 8, "cuda", False, monkeypatch, shape, 8)
    for x, y, what in zip(a, b, ("loss", "norm before", "norm after", "parameters", "m", "v")):
        assert torch.equal(x, y), what


ROUNDING = r"""
import json, sys, torch, triton, triton.language as tl
from pyphase.packing import _bf16_bits

@triton.jit
def k(X, Y, N: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(Y + i, _bf16_bits(tl.load(X + i)))

out = []
for seed in json.loads(sys.argv[1]):
    g = torch.Generator().manual_seed(seed)
    # values near bf16 ties, subnormals, huge values rounding to inf, zeros of both signs
    x = torch.cat([torch.randn(4000, generator=g) * 10.0 ** torch.randint(-40, 39, (4000,), generator=g),
                   (torch.randn(64, generator=g).view(torch.int32) & ~0xFFFF | 0x8000).view(torch.float32),  # ties
                   torch.tensor([0.0, -0.0, 3.4e38, -3.4e38, 1e-45, float("inf"), float("-inf")])])
    n = triton.next_power_of_2(x.numel())
    x = torch.cat([x, torch.zeros(n - x.numel())])
    y = torch.empty(n, dtype=torch.int16)
    k[(1,)](x, y, N=n)
    out.append(bool(torch.equal(y.view(torch.bfloat16), x.to(torch.bfloat16))))
print(json.dumps(out))
"""


def test_bf16_rounding_in_integers_equals_torchs(run_interpreted):
    """`_bf16_bits` (round to nearest, ties to even) gives torch's bf16 for finite values, ties,
    subnormals, overflow to inf and infinities."""
    assert run_interpreted(ROUNDING, [0, 1]) == [True, True]
