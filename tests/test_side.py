"""pyphase.side: weight gradients on a side stream give the same bits, and are joined back."""

from __future__ import annotations

import pytest
import torch

from pyphase import linear, side


def test_cpu_defers_nothing_and_matmul_is_bmm() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 8, 4, generator=g, requires_grad=True)
    w = torch.randn(2, 4, 3, generator=g, requires_grad=True)
    assert not side.enabled(y)
    (wd,) = side.defer(w)
    assert wd is w and not side.claim(wd)
    out = linear.matmul(y, w)
    gy, gw = torch.autograd.grad(out.square().sum(), (y, w))
    ref = torch.bmm(y, w)
    ry, rw = torch.autograd.grad(ref.square().sum(), (y, w))
    assert torch.equal(out, ref) and torch.equal(gy, ry) and torch.equal(gw, rw)


def test_a_deferred_weight_is_claimed_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(side, "enabled", lambda x: True)
    w = torch.randn(2, 4, 3, requires_grad=True)
    a, b = side.defer(w, w * 2)
    assert side.claim(a) and not side.claim(a)  # a second use's gradient stays on the main stream
    assert side.claim(b) and not side.claim(w)  # only deferred weights
    with torch.no_grad():
        (c,) = side.defer(w)
    assert c is w and not side.claim(c)  # no gradient, nothing to defer
    gw = torch.autograd.grad((a.sum() + b.sum()), w)[0]  # the deferred node passes gradients on
    assert torch.equal(gw, torch.full_like(w, 3.0))


def test_switch_and_compile_turn_it_off(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = torch.zeros(1)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert side.enabled(x)
    monkeypatch.setenv("PYPHASE_SIDE_STREAM", "0")
    assert not side.enabled(x)
    monkeypatch.delenv("PYPHASE_SIDE_STREAM")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not side.enabled(x)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="side streams need CUDA")


def _step(shape, idx, tgt):  # type: ignore[no-untyped-def]
    from pyphase.model import PackedNanoTransformer

    model = PackedNanoTransformer(shape, seeds=[0, 1]).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model.losses(idx, tgt)
    grads = torch.autograd.grad(losses.sum(), model.leaves)
    return losses.detach(), model.flat_grad(list(grads))


@CUDA
def test_cuda_gradients_are_the_same_bits_on_a_side_stream(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A packed model's losses and every gradient, eager: bit for bit with and without side streams;
    the side streams were used, and joined (nothing pending) when the backward pass returned."""
    from pyphase.model import Shape

    shape = Shape(vocab_size=65, d_model=128, n_layer=2, n_head=4, mlp_ratio=4, block_size=256)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 65, (2, 8, 256), generator=g).cuda()
    tgt = torch.randint(0, 65, (2, 8, 256), generator=g).cuda()
    monkeypatch.setenv("PYPHASE_SIDE_STREAM", "0")
    ref = _step(shape, idx, tgt)
    monkeypatch.delenv("PYPHASE_SIDE_STREAM")
    side._streams.clear()
    got = _step(shape, idx, tgt)
    assert side._streams and not side._pending
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


@CUDA
def test_cuda_graph_with_side_streams_replays_the_eager_step(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The step captured in a CUDA graph (fork and join become the graph's edges) gives the eager
    step's bits, replay after replay, with fresh inputs each time."""
    from pyphase.model import PackedNanoTransformer, Shape

    shape = Shape(vocab_size=65, d_model=128, n_layer=2, n_head=4, mlp_ratio=4, block_size=256)
    model = PackedNanoTransformer(shape, seeds=[0, 1]).cuda()
    idx = torch.zeros(2, 8, 256, dtype=torch.int64, device="cuda")
    tgt = torch.zeros_like(idx)

    def step():  # type: ignore[no-untyped-def]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses = model.losses(idx, tgt)
        return model.flat_grad(list(torch.autograd.grad(losses.sum(), model.leaves)))

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    assert not side._pending
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        idx.copy_(torch.randint(0, 65, idx.shape, generator=g))
        tgt.copy_(torch.randint(0, 65, idx.shape, generator=g))
        graph.replay()
        monkeypatch.setenv("PYPHASE_SIDE_STREAM", "0")
        ref = step()
        monkeypatch.delenv("PYPHASE_SIDE_STREAM")
        assert torch.equal(out, ref)
