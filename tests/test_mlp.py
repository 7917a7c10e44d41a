"""pyphase.mlp: the MLP with GELU fused into its GEMMs equals the stock computation.

As for attention (tests/test_attention.py): on the CPU the Triton kernels run in the interpreter
(subprocess with TRITON_INTERPRET=1) in fp32 and must match the stock bmm/GELU path to rounding;
bf16 accuracy is checked on CUDA only, against fp64, with the stock bf16 path's error as yardstick."""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase.mlp import gelu_mlp, gelu_mlp_reference

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, os, sys, numpy, torch, triton
    from pyphase import mlp
    from pyphase.mlp import gelu_mlp, gelu_mlp_reference
    # The stock path is the yardstick only in full fp32: "medium" lets the CPU's oneDNN do fp32
    # matmuls in bf16 (relative errors ~3e-3 here; TF32, where a CPU does it for "high", would give
    # 3e-4 to 7e-4, simulated). "highest" is torch's default; set here so that nothing else decides it.
    torch.set_float32_matmul_precision("highest")
    where = dict(torch=torch.__version__, triton=triton.__version__, numpy=numpy.__version__,
                 threads=torch.get_num_threads(), cpu=torch.backends.cpu.get_cpu_capability(),
                 matmul=torch.get_float32_matmul_precision(),
                 env={k: v for k, v in os.environ.items() if k.startswith(("PYPHASE_", "TORCH", "OMP_", "MKL_",
                                                                          "OPENBLAS_", "ONEDNN_", "DNNL_", "ATEN_"))})
    rel = lambda a, c: ((a.double() - c.double()).abs().max() / c.double().abs().max()).item()
    out = []
    for k, n, d, f, spec in json.loads(sys.argv[1]):
        mlp.set_config(spec)
        g = torch.Generator().manual_seed(n)
        h = torch.randn(k, n, d, generator=g).requires_grad_()
        w1 = (torch.randn(k, d, f, generator=g) * 0.3).requires_grad_()
        b1 = torch.randn(k, f, generator=g).requires_grad_()
        w2 = (torch.randn(k, f, d, generator=g) * 0.3).requires_grad_()
        dy = torch.randn(k, n, d, generator=g)
        y1 = gelu_mlp(h, w1, b1, w2, use_triton=True)
        g1 = torch.autograd.grad(y1, (h, w1, b1, w2), dy)
        y2 = gelu_mlp_reference(h, w1, b1, w2)
        g2 = torch.autograd.grad(y2, (h, w1, b1, w2), dy)
        # the same math in fp64: on a failure, says which of the two fp32 paths is off
        ins = [z.detach().double().requires_grad_() for z in (h, w1, b1, w2)]
        y3 = gelu_mlp_reference(*ins)
        exact = (y3, *torch.autograd.grad(y3, ins, dy.double()))
        out.append(dict(err=[rel(a, c) for a, c in zip((y1, *g1), (y2, *g2))],
                        triton_vs_fp64=[rel(a, c) for a, c in zip((y1, *g1), exact)],
                        stock_vs_fp64=[rel(a, c) for a, c in zip((y2, *g2), exact)], where=where))
    print(json.dumps(out))
    """
)

# (models, rows, d, hidden, launch configuration as `mlp.set_config` reads it): ragged rows, blocks
# larger than the hidden width, d not a power of two (masked columns), a hidden width not a multiple
# of the chunk, a chunk wider than the hidden layer; (2, 64, 32, 128) needs no masks; the three
# backward modes, and the bias gradient as a torch sum (fifth entry 0); the "dw" backward with ragged
# spans, masked columns, several hidden chunks, a chunk wider than the hidden layer and one span.
SHAPES = [(2, 100, 32, 128, "32,64,4,2"), (1, 64, 48, 192, "64,128,4,2"), (2, 37, 16, 64, "16,32,4,2"),
          (1, 40, 32, 32, "16,64,4,2"), (2, 64, 32, 128, "32,64,4,2"), (2, 64, 32, 128, "32,64,4,2/torch"),
          (2, 100, 32, 128, "32,64,4,2/torch"), (2, 100, 32, 128, "32,64,4,2/32,64,4,2,0"),
          (2, 100, 48, 192, "32,64,4,2/split:32,64,4,2"), (2, 64, 32, 128, "32,64,4,2/split:32,32,4,2,0"),
          (2, 100, 32, 128, "32,64,4,2/dw:32,64,4,2,64"), (1, 77, 48, 192, "32,64,4,2/dw:16,64,4,2,32"),
          (2, 40, 32, 32, "16,64,4,2/dw:16,64,4,2"), (1, 64, 16, 64, "32,32,4,2/dw:32,16,4,2,16")]


# How far apart two fp32 evaluations of the same math may be, as max|a - c| / max|c|, for these
# shapes (contractions of K <= 192 terms, u = 2^-24 ~ 6e-8): the observed spread is ~sqrt(K)·u, as
# for independent round-to-nearest errors: every case here is <= 7.1e-7, and the /torch case
# (2, 64, 32, 128) stays <= 5.2e-7 over 100 summation orders (its hidden units, rows and features
# permuted), at 1, 2, 4 or 8 torch threads, CPU capability default/avx2/avx512 and other BLAS
# kernels (MKL_CBWR, OPENBLAS_CORETYPE, DNNL_MAX_CPU_ISA). 1e-5 is 14x above the largest. The
# a-priori worst case, gamma_K·|A||B| through every product of the chain for both paths, would
# allow 5e-5 (dw2) to 1.1e-4 (db1) for that case, but it needs every rounding error to line up,
# which round-to-nearest does not do; a difference there means other arithmetic (e.g. a
# 10-bit-mantissa matmul: 3e-4 to 7e-4), not another summation order. A gradient 1.001 or 1.0001
# times too large fails (1e-3, 1e-4).
TOLERANCE = 1e-5


@OLD_TRITON_INTERPRETER
def test_fused_mlp_matches_stock_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    res = run_interpreted(INTERPRETED, SHAPES)
    for shape, r in zip(SHAPES, res):
        # output, dh, dw1, db1, dw2 (relative to their max); each path against fp64 and the
        # subprocess's torch/BLAS settings are in the message, to tell a kernel's error from the stock path's
        fmt = lambda v: "[" + ", ".join(f"{x:.2g}" for x in v) + "]"  # noqa: E731
        assert max(r["err"]) < TOLERANCE, (f"{shape}: |triton - stock| {fmt(r['err'])}, triton vs fp64 "
                                           f"{fmt(r['triton_vs_fp64'])}, stock vs fp64 {fmt(r['stock_vs_fp64'])}; "
                                           f"{r['where']}")


def test_cpu_path_is_the_stock_computation() -> None:
    g = torch.Generator().manual_seed(1)
    h, w1, b1, w2 = (torch.randn(*s, generator=g) for s in ((2, 10, 16), (2, 16, 64), (2, 64), (2, 64, 16)))
    assert torch.equal(gelu_mlp(h, w1, b1, w2), gelu_mlp_reference(h, w1, b1, w2))


def test_launch_configuration_parsing() -> None:
    from pyphase import mlp

    saved = dict(mlp.CONFIG)
    try:
        mlp.set_config("64,32,4,2/split:128,16,8,3,0")
        assert mlp.CONFIG == {"fwd": (64, 32, 4, 2), "bwd": (128, 16, 8, 3, 0), "bwd_mode": "split"}
        mlp.set_config("32,32,2,2")
        assert mlp.CONFIG == {"fwd": (32, 32, 2, 2), "bwd": (32, 32, 2, 2), "bwd_mode": "fused"}
        mlp.set_config("32,32,2,2/torch")
        assert mlp.CONFIG["bwd_mode"] == "torch" and mlp.CONFIG["fwd"] == (32, 32, 2, 2)
        mlp.set_config("64,32,4,2/dw:64,64,8,2,2048")
        assert mlp.CONFIG == {"fwd": (64, 32, 4, 2), "bwd": (64, 64, 8, 2, 2048), "bwd_mode": "dw"}
        for spec in ("64,32,4,2/dw:64,64,8,2,2048", "32,32,2,2/torch", "64,32,4,2/split:128,16,8,3,0",
                     "32,32,2,2/32,32,2,2"):
            mlp.set_config(spec)
            assert mlp.config_spec() == spec
        for bad in ("64,32,4", "a,b,c,d", "64,32,4,2/fast:64,32,4,2", "64,32,4,2/1,2,3"):
            with pytest.raises(ValueError, match="MLP launch configuration"):
                mlp.set_config(bad)
    finally:
        mlp.CONFIG.clear()
        mlp.CONFIG.update(saved)


def test_shape_mismatch_is_a_clear_error() -> None:
    h, w1, b1, w2 = torch.randn(1, 8, 16), torch.randn(1, 16, 64), torch.randn(1, 32), torch.randn(1, 64, 16)
    with pytest.raises(ValueError, match="MLP shapes do not match"):
        gelu_mlp(h, w1, b1, w2, use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 accuracy of the compiled kernels needs CUDA")
@pytest.mark.parametrize("n", [4096, 1000])
@pytest.mark.parametrize("mode", ["fused", "split", "torch", "dw"])
def test_bf16_accuracy_on_cuda_matches_the_stock_path(n: int, mode: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import mlp

    monkeypatch.setitem(mlp.CONFIG, "bwd_mode", mode)
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, d, f = 3, 128, 512
    h = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    w1 = (torch.randn(k, d, f, device=dev, generator=g) * 0.1).bfloat16()
    b1 = (torch.randn(k, f, device=dev, generator=g) * 0.5).bfloat16()
    w2 = (torch.randn(k, f, d, device=dev, generator=g) * 0.05).bfloat16()
    dy = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    ref_in = [z.double().requires_grad_() for z in (h, w1, b1, w2)]
    ref = [gelu_mlp_reference(*ref_in)]
    ref += torch.autograd.grad(ref[0], ref_in, dy.double())
    errs = {}
    for name, use in (("stock", False), ("triton", True)):
        ins = [z.clone().requires_grad_() for z in (h, w1, b1, w2)]
        y = gelu_mlp(*ins, use_triton=use)
        outs = [y, *torch.autograd.grad(y, ins, dy)]
        errs[name] = [((a.double() - c).abs().max() / c.abs().max()).item() for a, c in zip(outs, ref)]
    for i in range(5):
        assert errs["triton"][i] <= 2 * errs["stock"][i] + 1e-3, errs


def test_gelu_reciprocal_switch(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import mlp

    monkeypatch.delenv("PYPHASE_GELU_RCP", raising=False)
    monkeypatch.setattr(mlp.triton.knobs.runtime, "interpret", False)
    assert mlp.gelu_rcp()
    monkeypatch.setenv("PYPHASE_GELU_RCP", "div")
    assert not mlp.gelu_rcp()
    monkeypatch.delenv("PYPHASE_GELU_RCP")
    monkeypatch.setattr(mlp.triton.knobs.runtime, "interpret", True)  # no inline PTX there
    assert not mlp.gelu_rcp()


def test_gelu_hardware_reciprocal_compiles_for_sm90() -> None:
    """The GPU path's inline PTX goes through ptxas for sm_90 on any machine (Triton brings it): the
    reciprocal is one rcp.approx.ftz, the division's range checks are gone."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from pyphase import kernels, mlp

    @triton.jit
    def probe(Z, OUT, HW_RCP: tl.constexpr):
        z = tl.load(Z + tl.arange(0, 128))
        cdf, pdf = mlp._gelu_parts(z, HW_RCP)
        tl.store(OUT + tl.arange(0, 128), cdf + pdf)

    asm = {}
    for hw in (False, True):
        src = ASTSource(probe, {"Z": "*fp32", "OUT": "*fp32", "HW_RCP": "constexpr"}, {"HW_RCP": hw})
        ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1, **kernels.LAUNCH_OPTIONS})
        assert ck.asm["cubin"]
        asm[hw] = ck.asm["ptx"]
    assert "rcp.approx.ftz.f32" in asm[True] and "div.full.f32" not in asm[True]
    assert "div.full.f32" in asm[False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
@pytest.mark.parametrize("switch", ["PYPHASE_GELU_RCP=div", "PYPHASE_MASKS=all"])
@pytest.mark.parametrize("n", [1000, 4096])  # ragged spans (masked loads) and whole ones (EVEN)
@pytest.mark.parametrize("mode", ["fused", "split", "dw", "block", "block_h2", "linear"])
def test_instruction_switches_keep_the_bits(mode: str, n: int, switch: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """GELU's 1 / (1 + p|z|) as the bare hardware reciprocal, and the bounds masks dropped where
    the tiles cover the rows exactly, give every output of the MLP's forward and backward kernels
    (and, for the fused block, the add + LayerNorm backward's) bit for bit as the division and the
    masks did, extreme pre-activations included; and the QKV GEMM's ("linear"). "block_h2": the new stream x2 unused downstream,
    as after the last block, so the add + LayerNorm backward runs without an incoming stream
    gradient (where dropping its masks had changed the bits: kernels.unmasked)."""
    from pyphase import kernels, mlp
    from pyphase.mlp_block import mlp_block

    monkeypatch.setitem(mlp.CONFIG, "bwd_mode", "dw" if mode.startswith("block") else mode)
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(3)
    k, d, f = 2, 128, 512
    w1 = (torch.randn(k, d, f, device=dev, generator=g) * 0.3).bfloat16()
    b1 = torch.randn(k, f, device=dev, generator=g) * 2
    b1[0, :6] = torch.tensor([3e38, -3e38, 1e30, -1e30, float("inf"), -float("inf")])  # z beyond any product
    b1 = b1.bfloat16()
    w2 = (torch.randn(k, f, d, device=dev, generator=g) * 0.05).bfloat16()
    h = torch.randn(k, n, d, device=dev, generator=g) * 3
    p = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    dy = torch.randn(k, n, d, device=dev, generator=g)
    vecs = [torch.randn(k, d, device=dev, generator=g) for _ in range(6)]

    def run() -> list[torch.Tensor]:
        if mode == "linear":
            from pyphase.linear import linear_bias

            ins = [z.clone().requires_grad_() for z in (h.bfloat16(), w1[..., :384], b1[:, :384])]
            y = linear_bias(*ins)
            outs = [y]
            loss = (y.float()[..., :128] * dy).sum()
        elif mode.startswith("block"):
            ins = [z.clone().requires_grad_() for z in (h, p, *vecs[:3], w1, b1, w2, *vecs[3:])]
            x0, p_, pb, lw, lb, w1_, b1_, w2_, b2, nw, nb = ins
            with torch.autocast("cuda", torch.bfloat16):
                x2, h2 = mlp_block(x0, p_, pb, lw, lb, w1_, b1_, w2_, b2, nw, nb, use_triton=True)
            outs = [x2, h2]
            loss = (h2.float() * dy).sum() + (0 if mode == "block_h2" else (x2 * dy).sum())
        else:
            ins = [z.clone().requires_grad_() for z in (h.bfloat16(), w1, b1, w2)]
            y = mlp.gelu_mlp(*ins, use_triton=True)
            outs = [y]
            loss = (y.float() * dy).sum()
        grads = torch.autograd.grad(loss, ins, allow_unused=True)
        return outs + [gr for gr in grads if gr is not None]

    name, _, value = switch.partition("=")
    monkeypatch.setenv(name, value)
    assert not (mlp.gelu_rcp() and kernels.unmasked(True))
    before = run()
    monkeypatch.delenv(name)
    assert mlp.gelu_rcp() and kernels.unmasked(True)
    after = run()
    assert len(before) == len(after) >= (4 if mode == "linear" else 5)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
