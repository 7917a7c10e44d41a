"""pyphase.kernels: launches pass through normally, are only recorded inside `record()`, and
`compile_all` compiles each recorded launch once without running it; on CUDA a trainer that
precompiled trains as one that compiled on first use."""

from __future__ import annotations

import textwrap
import threading
from dataclasses import replace

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER, triton_cache_hits

from pyphase import kernels
from pyphase.kernels import sum_parts


class FakeKernel:
    """Stands in for a Triton JITFunction: records launches and warm-ups."""

    def __init__(self) -> None:
        self.runs: list[tuple] = []
        self.warm: list[tuple] = []

    def __getitem__(self, grid):  # type: ignore[no-untyped-def]
        return lambda *args, **meta: self.runs.append((grid, args, meta))

    def warmup(self, *args, grid, **meta):  # type: ignore[no-untyped-def]
        self.warm.append((grid, args, meta))


def test_launch_runs_outside_record_and_only_records_inside() -> None:
    k = FakeKernel()
    kernels.launch(k, (2, 3))(1, 2, BM=64)
    # FP fusion pinned on every launch (Triton 3.10 turns its default off).
    fused = {"enable_fp_fusion": True}
    assert kernels.LAUNCH_OPTIONS == fused
    assert k.runs == [((2, 3), (1, 2), {"BM": 64, **fused})]
    with kernels.record() as rec:
        kernels.launch(k, (4,))("a", num_warps=4)
        # autograd runs the backward pass on another thread: recorded there too
        t = threading.Thread(target=lambda: kernels.launch(k, (5,))("b"))
        t.start()
        t.join()
    assert len(k.runs) == 1 and k.warm == []
    assert [(g, a, m) for _, g, a, m in rec] == [((4,), ("a",), {"num_warps": 4, **fused}), ((5,), ("b",), fused)]
    kernels.launch(k, (6,))(0)  # recording ended
    assert len(k.runs) == 2
    kernels.launch(k, (7,))(0, enable_fp_fusion=False)  # a launch's own option wins
    assert k.runs[-1] == ((7,), (0,), {"enable_fp_fusion": False})


def test_record_does_not_nest_and_compile_all_warms_each_launch() -> None:
    k = FakeKernel()
    with kernels.record() as rec:
        with pytest.raises(RuntimeError, match="already active"):
            with kernels.record():
                pass
        kernels.launch(k, (1,))(7, BM=32)
        kernels.launch(k, (2,))(8)
    kernels.compile_all(rec, workers=2)
    fused = kernels.LAUNCH_OPTIONS
    assert sorted(k.warm, key=str) == sorted([((1,), (7,), {"BM": 32, **fused}), ((2,), (8,), fused)], key=str)
    assert k.runs == []


def test_compile_all_falls_back_to_threads_when_forked_compiles_cannot_start(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from pyphase import forked_compile

    def broken(records):  # type: ignore[no-untyped-def]
        raise RuntimeError("no such Triton internals")

    monkeypatch.setenv("PYPHASE_COMPILE_PROCS", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(forked_compile, "plan", broken)
    k = FakeKernel()
    with kernels.record() as rec:
        kernels.launch(k, (1,))(7, BM=32)
        kernels.launch(k, (2,))(8)
    kernels.compile_all(rec, workers=2)
    fused = kernels.LAUNCH_OPTIONS
    assert sorted(k.warm, key=str) == sorted([((1,), (7,), {"BM": 32, **fused}), ((2,), (8,), fused)], key=str)
    assert "compiling them in threads" in capsys.readouterr().err


EAGER_OPS = textwrap.dedent(
    """
    import json, sys, torch
    from torch._library.custom_ops import CustomOpDef
    entered = []
    dispatch = CustomOpDef.__call__
    CustomOpDef.__call__ = lambda self, *a, **kw: entered.append(self._qualname) or dispatch(self, *a, **kw)
    from pyphase.attention import causal_attention
    from pyphase.head import head_ce
    from pyphase.layernorm import add_ln, embed_ln
    from pyphase.mlp import gelu_mlp
    g = torch.Generator().manual_seed(0)
    k, b, t, d, v = 1, 2, 16, 32, 11
    leaf = lambda *s: (torch.randn(*s, generator=g) * 0.3).requires_grad_()
    wte, wpe, w, bb = leaf(k, v, d), leaf(k, t, d), leaf(k, d), leaf(k, d)
    idx = torch.randint(0, v, (k, b, t), generator=g)
    x, h = embed_ln(idx, wte, wpe, w, bb, use_triton=True)
    y = causal_attention(h @ leaf(k, d, 3 * d), leaf(k, 3 * d), b, t, 2, use_triton=True)
    x, h = add_ln(x, y, leaf(k, d), w, bb, use_triton=True)
    m = gelu_mlp(h, leaf(k, d, 4 * d), leaf(k, 4 * d), leaf(k, 4 * d, d), use_triton=True)
    x, h = add_ln(x, m, leaf(k, d), w, bb, use_triton=True)
    loss = head_ce(h, leaf(k, d, v), idx.view(k, -1), use_triton=True).mean()
    loss.backward()
    print(json.dumps([[entered, bool(torch.isfinite(wte.grad).all())]]))
    """
)


@OLD_TRITON_INTERPRETER
def test_ops_run_forward_and_backward_outside_torch_library_dispatch(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    """Outside torch.compile every op, forward and backward, runs as a plain autograd Function:
    no custom op's dispatcher is entered (its first call imports torch._dynamo, ~4 s on the H100)."""
    (entered, finite), = run_interpreted(EAGER_OPS, [0])
    assert finite
    assert entered == []


def _small_pack():  # type: ignore[no-untyped-def]
    """Two configs of a small model, and every Triton kernel of their training step (the add +
    LayerNorm forward kernel only where mlp_block leaves a step to it)."""
    from pyphase import attention, head, layernorm, linear, mlp, mlp_block, optim
    from pyphase.config import ModelShape, RunConfig

    shape = ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64)
    cfgs = [RunConfig(experiment="t", batch_size=8, lr=lr, gradient_clip=1.0, seed=i, steps=6, eval_interval=3,
                      eval_windows=4, model=shape) for i, lr in enumerate((1e-3, 3e-3))]
    jits = [mlp_block._mlp_block_fwd_kernel, mlp._mlp_bwd_dw_kernel, attention._attn_fwd_kernel,
            attention._attn_bwd_dq_kernel, layernorm._add_ln_bwd_kernel, head._head_fwd_kernel, head._head_bwd_kernel,
            layernorm._embed_ln_fwd_kernel, layernorm._embed_ln_bwd_kernel, kernels._sum_parts_kernel,
            optim._sumsq_kernel, optim._adamw_kernel, linear._linear_bias_kernel, linear._wgrad_kernel]
    if mlp_block.CONFIG["fuse"] != (1, 1):
        jits.append(layernorm._add_ln_fwd_kernel)
    return cfgs, jits


def _forget(jits) -> None:  # type: ignore[no-untyped-def]
    """Forget this process's compiles of `jits`, so a precompile has work to do."""
    for j in jits:
        for cache in j.device_caches.values():
            cache[0].clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling Triton kernels needs CUDA")
def test_precompiled_trainer_trains_as_one_compiled_on_first_use() -> None:
    pytest.importorskip("triton")
    from pyphase.data import load_corpus
    from pyphase.train import PackTrainer

    corpus = load_corpus(None)
    cfgs, jits = _small_pack()
    _forget(jits)

    def cached() -> list[int]:
        return [len(j.device_caches[torch.cuda.current_device()][0]) for j in jits]

    runs = []
    for pre in (True, False):
        tr = PackTrainer(cfgs, corpus, "cuda")
        if pre:
            assert tr.precompile() > 0
            after = cached()
            assert all(after), after
        else:
            tr.precompile = lambda: 0.0  # type: ignore[method-assign]
        out = tr.run(progress=False)
        if pre:
            assert cached() == after  # training and evaluation compiled nothing more
        runs.append([o.steps.select("train_loss", "val_loss", "grad_norm_before").rows() for o in out])
    assert runs[0] == runs[1]  # every kernel deterministic: the same bits

    # Two packs of other batch sizes side by side: one parallel compile for both, nothing after it.
    from pyphase.train import precompile_together, run_together

    _forget(jits)
    packs = [PackTrainer([replace(c, batch_size=b) for c in cfgs], corpus, "cuda") for b in (4, 16)]
    precompile_together(packs)
    after = cached()
    assert all(after), after
    run_together(packs, [None, None], progress=False)
    assert cached() == after


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling Triton kernels needs CUDA")
@pytest.mark.parametrize("procs", ["1", "0"])
def test_compile_all_in_forked_processes_leaves_the_parent_only_cache_hits(procs, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With forked compiles every compile the parent itself runs finds Triton's on-disk cache filled
    (the children compiled under the same key); with the thread pool alone (the control) each one
    compiles. Each way starts from an empty cache and nothing compiled in this process."""
    pytest.importorskip("triton")
    from pyphase.data import load_corpus
    from pyphase.train import PackTrainer

    monkeypatch.setenv("PYPHASE_COMPILE_PROCS", procs)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TRITON_ALWAYS_COMPILE", raising=False)
    cfgs, jits = _small_pack()
    tr = PackTrainer(cfgs, load_corpus(None), "cuda")
    records = tr.kernel_launches()
    _forget(jits)
    with triton_cache_hits() as hits:
        kernels.compile_all(records)
    assert len(hits) >= len(jits) - 1, hits
    assert all(hits) if procs == "1" else not any(hits), hits
    assert all(len(j.device_caches[torch.cuda.current_device()][0]) for j in jits if j.device_caches)


SUM_PARTS = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase.kernels import sum_parts
    out = []
    for k, r, c in json.loads(sys.argv[1]):
        part = torch.randn(k, r, c, generator=torch.Generator().manual_seed(r * c), dtype=torch.float64)
        ref = part.sum(dim=1)
        got = sum_parts(part.float()).double()
        out.append(((got - ref).abs().max() / ref.abs().max()).item())
    print(json.dumps(out))
    """
)


@OLD_TRITON_INTERPRETER
def test_sum_parts_adds_every_partial_sum(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    # partial counts below, at and above one block of rows (64), columns not a multiple of 128
    cases = [(2, 5, 300), (1, 64, 128), (3, 130, 77), (1, 1, 1)]
    for case, err in zip(cases, run_interpreted(SUM_PARTS, cases)):
        assert err < 1e-6, (case, err)


def test_sum_parts_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="contiguous fp32"):
        sum_parts(torch.zeros(2, 3, 4).transpose(1, 2))
    with pytest.raises(ValueError, match="contiguous fp32"):
        sum_parts(torch.zeros(2, 3, 4, dtype=torch.float64))


def test_masks_switch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("PYPHASE_MASKS", raising=False)
    assert kernels.unmasked(True) and not kernels.unmasked(False)
    monkeypatch.setenv("PYPHASE_MASKS", "all")
    assert not kernels.unmasked(True) and not kernels.unmasked(False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling Triton kernels needs CUDA")
def test_compile_all_builds_the_launchers_before_the_kernels_load(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Where Triton builds a launcher per kernel signature with gcc (3.6, the H100 machine's), every
    one `compile_all` needs is built by its own threads while the kernels compile, so loading a
    compiled kernel finds its launcher in the cache: no launcher is built anywhere else. From an
    empty cache and nothing compiled in this process."""
    pytest.importorskip("triton")
    from triton.backends.nvidia import driver as nv
    from triton.runtime import build

    from pyphase.data import load_corpus
    from pyphase.train import PackTrainer

    if not hasattr(nv, "make_launcher"):
        pytest.skip("this Triton has one launcher for every kernel")
    monkeypatch.setenv("PYPHASE_COMPILE_PROCS", "1")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TRITON_ALWAYS_COMPILE", raising=False)
    cfgs, jits = _small_pack()
    records = PackTrainer(cfgs, load_corpus(None), "cuda").kernel_launches()
    _forget(jits)
    builds: list[tuple[str, str]] = []
    real = build._build

    def spy(name, *a, **k):  # type: ignore[no-untyped-def]
        builds.append((name, threading.current_thread().name))
        return real(name, *a, **k)

    monkeypatch.setattr(build, "_build", spy)
    kernels.compile_all(records)
    launchers = [t for n, t in builds if n == "__triton_launcher"]
    assert launchers and all(t.startswith("pyphase-launcher") for t in launchers), builds
