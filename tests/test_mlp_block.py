"""pyphase.mlp_block: add + LayerNorm, MLP, add + next LayerNorm in one forward kernel equals the
unfused ops, forward and backward.

On the CPU the kernel runs in Triton's interpreter (subprocess with TRITON_INTERPRET=1) in fp32 and
must match the stock computation to rounding. On CUDA (bf16 autocast) it must give the unfused
kernels' results bit for bit: it computes the same expressions in the same order."""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase.mlp_block import mlp_block, mlp_block_reference

pytest.importorskip("triton")

NAMES = ("x0", "p", "pb", "lw", "lb", "w1", "b1", "w2", "b2", "nw", "nb")


def _inputs(k: int, n: int, d: int, f: int, g: torch.Generator, device: str = "cpu") -> list[torch.Tensor]:
    def r(*s: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*s, generator=g, device=device) * scale + shift
    return [r(k, n, d), r(k, n, d, scale=0.5), r(k, d, scale=0.3), r(k, d, scale=0.2, shift=1.0), r(k, d, scale=0.2),
            r(k, d, f, scale=0.3), r(k, f, scale=0.5), r(k, f, d, scale=0.2), r(k, d, scale=0.3),
            r(k, d, scale=0.2, shift=1.0), r(k, d, scale=0.2)]


INTERPRETED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import mlp, mlp_block as mb
    from pyphase.mlp_block import mlp_block, mlp_block_reference
    from test_mlp_block import _inputs
    out = []
    for k, n, d, f, spec, bspec in json.loads(sys.argv[1]):
        mlp.set_config(spec)
        mb.set_config(bspec)
        g = torch.Generator().manual_seed(n + d)
        ins = [z.requires_grad_() for z in _inputs(k, n, d, f, g)]
        dx2, dh2 = torch.randn(k, n, d, generator=g), torch.randn(k, n, d, generator=g)
        errs = []
        res = []
        for use in (True, False):
            fn = (lambda *a: mlp_block(*a, use_triton=True)) if use else mlp_block_reference
            x2, h2 = fn(*ins)
            grads = torch.autograd.grad((x2, h2), ins, (dx2, dh2))
            res.append((x2, h2, *grads))
        out.append([((a - c).abs().max() / c.abs().max()).item() for a, c in zip(*res)])
    print(json.dumps(out))
    """
)

# (models, rows, d, hidden, MLP launch configuration as `mlp.set_config` reads it, the fused
# kernel's as `mlp_block.set_config` does): no masks; ragged rows; d not a power of two (masked
# columns) and a hidden width not a multiple of the chunk; a chunk wider than the hidden layer; its
# own launch; the first or the second add + LayerNorm left to layernorm's kernel; h and the MLP's
# output staged through memory ("/1,1,1"), with ragged rows and with none (no masks at all).
SHAPES = [(2, 64, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "mlp"), (2, 100, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "mlp"),
          (1, 77, 48, 192, "32,128,4,2/dw:16,64,4,2,32", "mlp"), (2, 40, 32, 32, "16,64,4,2/dw:16,64,4,2", "mlp"),
          (2, 100, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "16,32,4,1"),
          (2, 100, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "64,64,4,3"),
          (1, 77, 48, 192, "32,128,4,2/dw:16,64,4,2,32", "mlp/0,1"),
          (1, 77, 48, 192, "32,128,4,2/dw:16,64,4,2,32", "mlp/1,0"),
          (2, 100, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "64,32,4,3/1,1,1"),
          (2, 128, 32, 128, "32,64,4,2/dw:32,64,4,2,64", "64,32,4,3/1,1,1"),
          (1, 77, 48, 192, "32,128,4,2/dw:16,64,4,2,32", "mlp/1,1,1"),
          (1, 77, 48, 192, "32,128,4,2/dw:16,64,4,2,32", "mlp/0,1,1")]


@OLD_TRITON_INTERPRETER
def test_fused_block_matches_the_unfused_ops_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    errs = run_interpreted(f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n" + INTERPRETED, SHAPES)
    for shape, e in zip(SHAPES, errs):
        # x2, h2, then the gradients of x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb (relative to their max)
        assert max(e) < 1e-5, (shape, dict(zip(("x2", "h2", *NAMES), e)))


def test_cpu_path_is_the_unfused_computation() -> None:
    g = torch.Generator().manual_seed(0)
    ins = _inputs(2, 24, 16, 64, g)
    x2, h2 = mlp_block(*ins)
    r2, q2 = mlp_block_reference(*ins)
    assert torch.equal(x2, r2) and torch.equal(h2, q2)


def test_launch_configuration_parsing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import mlp_block as mb

    monkeypatch.setattr(mb, "CONFIG", dict(mb.CONFIG))
    mb.set_config("64,32,8,3/1,0")
    assert mb.CONFIG == {"fwd": (64, 32, 8, 3), "fuse": (1, 0), "stage": 0, "maxnreg": 0}
    mb.set_config("64,32,4,3,168/1,1,1")
    assert mb.CONFIG == {"fwd": (64, 32, 4, 3), "fuse": (1, 1), "stage": 1, "maxnreg": 168}
    mb.set_config("mlp")
    assert mb.CONFIG == {"fwd": None, "fuse": (1, 1), "stage": 0, "maxnreg": 0}
    for bad in ("64,32,4", "mlp/1,2", "a,b,c,d", "mlp/1,1,2", "64,32,4,3,300", "mlp/1,1,1,1"):
        with pytest.raises(ValueError, match="mlp_block launch configuration"):
            mb.set_config(bad)


def test_only_widths_up_to_max_width_take_the_fused_kernel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import layernorm, mlp
    from pyphase import mlp_block as mb

    monkeypatch.setattr(layernorm, "supported", lambda x, r: True)  # as on CUDA
    monkeypatch.setattr(mlp, "supported", lambda h, w: True)
    monkeypatch.delenv("PYPHASE_MLP_BLOCK", raising=False)
    for d, fused in ((128, True), (96, True), (130, False), (256, False)):
        x = torch.zeros(1, 4, d)
        assert mb.supported(x, x, torch.zeros(1, d, 4 * d)) is fused, d
    monkeypatch.setenv("PYPHASE_MLP_BLOCK", "off")
    assert not mb.supported(torch.zeros(1, 4, 128), torch.zeros(1, 4, 128), torch.zeros(1, 128, 512))


def test_shape_mismatch_is_a_clear_error() -> None:
    g = torch.Generator().manual_seed(0)
    ins = _inputs(1, 8, 16, 64, g)
    ins[6] = torch.randn(1, 32)  # b1 of the wrong width
    with pytest.raises(ValueError, match="mlp_block shapes do not match"):
        mlp_block(*ins, use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel needs CUDA")
@pytest.mark.parametrize("n, stream, spec", [(4096, torch.float32, "64,64,4,3"), (1000, torch.float32, "64,64,4,3"),
                                             (4096, torch.bfloat16, "64,64,4,3"), (1000, torch.bfloat16, "64,64,4,3"),
                                             (4096, torch.float32, "mlp"), (1000, torch.float32, "mlp/0,1"),
                                             (1000, torch.float32, "mlp/1,0"), (4096, torch.float32, "64,32,4,3,168/1,1,1"),
                                             (1000, torch.float32, "64,32,4,3,168/1,1,1"),
                                             (1000, torch.bfloat16, "64,64,4,3/1,1,1"), (1000, torch.float32, "mlp/0,1,1"),
                                             (4096, torch.float32, "default"), (1000, torch.bfloat16, "default")])
def test_cuda_fused_block_gives_the_unfused_kernels_bits(n: int, stream: torch.dtype, spec: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import mlp_block as mb

    monkeypatch.setattr(mb, "CONFIG", dict(mb.CONFIG))
    if spec != "default":  # else the launch as committed
        mb.set_config(spec)
    g = torch.Generator(device="cuda").manual_seed(n)
    k, d, f = 3, 128, 512
    base = _inputs(k, n, d, f, g, "cuda")
    base[0] = base[0].to(stream)
    base[1] = base[1].bfloat16()  # the projection's output under autocast
    dx2 = torch.randn(k, n, d, generator=g, device="cuda").to(stream)
    dh2 = torch.randn(k, n, d, generator=g, device="cuda").bfloat16()
    res = {}
    for fused in (True, False):
        monkeypatch.setenv("PYPHASE_MLP_BLOCK", "on" if fused else "off")
        ins = [z.clone().requires_grad_() for z in base]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x2, h2 = mlp_block(*ins)
        res[fused] = (x2, h2, *torch.autograd.grad((x2, h2), ins, (dx2, dh2)))
    for name, a, b in zip(("x2", "h2", *NAMES), res[True], res[False]):
        assert a.dtype == b.dtype and torch.equal(a, b), (name, (a.float() - b.float()).abs().max().item())
