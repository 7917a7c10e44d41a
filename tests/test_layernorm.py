"""pyphase.layernorm: residual add + LayerNorm equals the stock computation, values and gradients.

As for attention and the MLP: on the CPU the Triton kernels run in the interpreter (subprocess with
TRITON_INTERPRET=1) in fp32 and must match `add_ln_reference` to rounding; bf16 accuracy is checked
on CUDA only, against fp64, with the stock bf16 path's error as yardstick."""

from __future__ import annotations

import textwrap

import pytest
import torch

from pyphase.layernorm import add_ln, add_ln_reference

from conftest import OLD_TRITON_INTERPRETER

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import layernorm
    from pyphase.layernorm import add_ln, add_ln_reference
    out = []
    for k, n, d, fwd, bwd, use_x, has_r in json.loads(sys.argv[1]):
        layernorm.CONFIG.update(fwd=tuple(fwd), bwd=tuple(bwd))
        g = torch.Generator().manual_seed(n + d)
        x = (torch.randn(k, n, d, generator=g) * 2 + 0.5).requires_grad_()
        r = torch.randn(k, n, d, generator=g).requires_grad_()
        # parameters as strided views of one buffer, as the packed model holds them
        flat = torch.randn(k, 3 * d + 5, generator=g).requires_grad_()
        rb, w, b = (flat[:, i * d:(i + 1) * d] for i in range(3))
        dxn = torch.randn(k, n, d, generator=g)
        dh = torch.randn(k, n, d, generator=g)
        ins = (x, r, rb, w, b) if has_r else (x, w, b)
        res = []
        for fn in (lambda *z: add_ln(*z, use_triton=True), add_ln_reference):
            xn, h = fn(*ins) if has_r else fn(x, None, None, w, b)
            loss = (h * dh).sum() + ((xn * dxn).sum() if use_x else 0.0)
            res.append([xn, h, *torch.autograd.grad(loss, ins)])
        out.append([((a - c).abs().max() / c.abs().max()).item() for a, c in zip(*res)])
    print(json.dumps(out))
    """
)

# (models, rows, d, fwd config, bwd config, new residual stream used downstream): ragged rows
# (not a multiple of a tile, nor of a program's tiles), d not a power of two (masked columns), more
# programs than one, the final LayerNorm's case where only the normalised output is used, and the
# first block's plain LayerNorm (no branch; its input used downstream or not).
CASES = [(2, 100, 32, (32, 4), (16, 3, 4), True, True), (1, 77, 48, (16, 4), (8, 4, 2), True, True),
         (3, 64, 16, (64, 4), (64, 1, 4), True, True), (2, 50, 32, (32, 4), (16, 2, 4), False, True),
         (2, 100, 32, (32, 4), (16, 3, 4), True, False), (1, 77, 48, (16, 4), (8, 4, 2), False, False)]


@OLD_TRITON_INTERPRETER
def test_add_ln_matches_stock_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(INTERPRETED, CASES)
    for case, e in zip(CASES, errs):
        assert max(e) < 1e-5, (case, e)  # new stream, output; gradients of x, (r, rb,) w, b


def test_cpu_path_is_the_stock_computation() -> None:
    g = torch.Generator().manual_seed(3)
    x, r = torch.randn(2, 10, 16, generator=g), torch.randn(2, 10, 16, generator=g)
    rb, w, b = (torch.randn(2, 16, generator=g) for _ in range(3))
    for got, want in zip(add_ln(x, r, rb, w, b), add_ln_reference(x, r, rb, w, b)):
        assert torch.equal(got, want)
    xn, h = add_ln(x, None, None, w, b)
    assert xn is x and torch.equal(h, torch.nn.functional.layer_norm(x, (16,)) * w[:, None] + b[:, None])


def test_shape_mismatch_is_a_clear_error() -> None:
    x, r = torch.randn(1, 8, 16), torch.randn(1, 8, 16)
    with pytest.raises(ValueError, match="add_ln shapes do not match"):
        add_ln(x, r, torch.randn(1, 8), torch.randn(1, 16), torch.randn(1, 16), use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 accuracy of the compiled kernels needs CUDA")
@pytest.mark.parametrize("n,has_r,x_dtype", [(4096, True, torch.float32), (1000, True, torch.float32),
                                             (1000, False, torch.float32), (1000, True, torch.bfloat16)])
def test_bf16_accuracy_on_cuda_matches_the_stock_path(n: int, has_r: bool, x_dtype: torch.dtype) -> None:
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, d = 3, 128
    x = (torch.randn(k, n, d, device=dev, generator=g) * 3).to(x_dtype)  # bf16: PYPHASE_RESIDUAL=bf16
    r = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    rb, w, b = (torch.randn(k, d, device=dev, generator=g) * s for s in (0.1, 1.0, 0.1))
    dxn = torch.randn(k, n, d, device=dev, generator=g)
    dh = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    def call(fn, ins):  # type: ignore[no-untyped-def]
        return fn(*ins) if has_r else fn(ins[0], None, None, *ins[1:])

    base = (x, r, rb, w, b) if has_r else (x, w, b)
    ref_in = [z.double().requires_grad_() for z in base]
    xn, h = call(add_ln_reference, ref_in)
    ref = [xn, h, *torch.autograd.grad((h * dh.double()).sum() + (xn * dxn.double()).sum(), ref_in)]
    errs = {}
    for name, use in (("stock", False), ("triton", True)):
        ins = [z.clone().requires_grad_() for z in base]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            xn, h = call(lambda *z: add_ln(*z, use_triton=use), ins)
        h = h.bfloat16()  # the stock path's output is fp32, cast by its consumer under autocast
        outs = [xn, h, *torch.autograd.grad((h.float() * dh.float()).sum() + (xn * dxn).sum(), ins)]
        errs[name] = [((a.double() - c).abs().max() / c.abs().max()).item() for a, c in zip(outs, ref)]
    for i in range(len(ref)):
        assert errs["triton"][i] <= 2 * errs["stock"][i] + 1e-3, errs


EMBED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import layernorm
    from pyphase.layernorm import embed_ln, embed_ln_reference
    out = []
    for k, b, t, t_max, v, d, rows, use_x, programs, low in json.loads(sys.argv[1]):
        res_dtype = torch.bfloat16 if low else None
        layernorm.CONFIG.update(fwd=(rows, 4), bwd=(16, 3, 4), embed_bwd=(16, 4, programs))
        g = torch.Generator().manual_seed(b * t + d)
        idx = torch.randint(0, v, (k, b, t), generator=g)
        # tables and LayerNorm parameters as strided views of one buffer, as the packed model holds them
        flat = torch.randn(k, (v + t_max) * d + 2 * d + 3, generator=g).requires_grad_()
        wte = flat[:, : v * d].view(k, v, d)
        wpe = flat[:, v * d : (v + t_max) * d].view(k, t_max, d)
        w = flat[:, (v + t_max) * d : (v + t_max + 1) * d]
        bb = flat[:, (v + t_max + 1) * d : (v + t_max + 2) * d]
        dx = torch.randn(k, b * t, d, generator=g)
        dh = torch.randn(k, b * t, d, generator=g)
        res = []
        for fn in (lambda *z: embed_ln(*z, use_triton=True), embed_ln_reference):
            x, h = fn(idx, wte, wpe, w, bb, res_dtype)
            loss = (h * dh).sum() + ((x * dx).sum() if use_x else 0.0)
            res.append([x, h, *torch.autograd.grad(loss, flat)])
        out.append([((a - c).abs().max() / c.abs().max()).item() for a, c in zip(*res)])
    print(json.dumps(out))
    """
)

# (models, sequences, context, position table length, vocabulary, d, rows per program, stream used
# downstream, backward programs aimed at, bf16 residual stream): ragged rows, d not a power of two,
# a position table longer than the context, sequences shared unevenly among the backward's programs,
# a vocabulary above EMBED_MAX_VOCAB or a table tile above EMBED_MAX_TILE (the stock embedding
# backward), and the opt-in bf16 stream (fused and stock backward).
EMBED_CASES = [(2, 3, 20, 24, 11, 32, 16, True, 256, False), (1, 2, 33, 33, 7, 48, 32, True, 256, False),
               (2, 2, 16, 16, 5, 16, 8, False, 256, False), (2, 5, 20, 20, 11, 32, 16, True, 8, False),
               (1, 2, 16, 16, 130, 16, 16, True, 256, False), (1, 2, 16, 16, 65, 256, 16, True, 256, False),
               (2, 3, 20, 24, 11, 32, 16, True, 256, True), (1, 2, 16, 16, 130, 16, 16, True, 256, True)]


@OLD_TRITON_INTERPRETER
def test_embed_ln_matches_stock_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(EMBED, EMBED_CASES)
    for case, e in zip(EMBED_CASES, errs):
        if case[-1]:
            # bf16 stream: the stock path rounds the LayerNorm output and the stream's gradient to
            # bf16 where the kernels keep fp32, and Triton's interpreter truncates fp32 -> bf16 where
            # the GPU rounds to nearest (bf16's epsilon is 7.8e-3)
            assert max(e) < 2e-2, (case, e)
        else:
            assert max(e) < 1e-5, (case, e)  # stream, LayerNorm output, gradient of the parameter buffer


def test_embed_ln_shape_mismatch_is_a_clear_error() -> None:
    from pyphase.layernorm import embed_ln

    idx = torch.zeros(1, 2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="embed_ln shapes do not match"):
        embed_ln(idx, torch.randn(1, 5, 16), torch.randn(1, 4, 16), torch.randn(1, 16), torch.randn(1, 16),
                 use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 accuracy of the compiled kernels needs CUDA")
@pytest.mark.parametrize("residual", [None, torch.bfloat16])
def test_embed_ln_bf16_accuracy_on_cuda_matches_the_stock_path(residual) -> None:
    """Under bf16 autocast, with the fp32 stream or the opt-in bf16 one (both paths rounding it)."""
    from pyphase.layernorm import embed_ln, embed_ln_reference

    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, b, t, v, d = 3, 16, 256, 65, 128
    idx = torch.randint(0, v, (k, b, t), device=dev, generator=g)
    wte, wpe = torch.randn(k, v, d, device=dev, generator=g), torch.randn(k, t, d, device=dev, generator=g) * 0.1
    w, bb = torch.randn(k, d, device=dev, generator=g), torch.randn(k, d, device=dev, generator=g) * 0.1
    dx = torch.randn(k, b * t, d, device=dev, generator=g)
    dh = torch.randn(k, b * t, d, device=dev, generator=g).bfloat16()
    ref_in = [z.double().requires_grad_() for z in (wte, wpe, w, bb)]
    x, h = embed_ln_reference(idx, *ref_in)
    ref = [x, h, *torch.autograd.grad((h * dh.double()).sum() + (x * dx.double()).sum(), ref_in)]
    errs = {}
    for name, use in (("stock", False), ("triton", True)):
        ins = [z.clone().requires_grad_() for z in (wte, wpe, w, bb)]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x, h = embed_ln(idx, *ins, residual, use_triton=use)
        h = h.bfloat16()
        outs = [x, h, *torch.autograd.grad((h.float() * dh.float()).sum() + (x.float() * dx).sum(), ins)]
        errs[name] = [((a.double() - c).abs().max() / c.abs().max()).item() for a, c in zip(outs, ref)]
    for i in range(len(ref)):
        assert errs["triton"][i] <= 2 * errs["stock"][i] + 1e-3, errs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
def test_embed_ln_backward_is_fp32_accurate_on_cuda() -> None:
    """The fused backward sums the token table's gradient on the tensor cores from three bf16 terms
    of each row's gradient: in fp32 it must match the stock backward to fp32 rounding."""
    from pyphase.layernorm import embed_ln, embed_ln_reference

    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1)
    k, b, t, v, d = 2, 24, 256, 65, 128
    idx = torch.randint(0, v, (k, b, t), device=dev, generator=g)
    ins = [torch.randn(k, v, d, device=dev, generator=g), torch.randn(k, t, d, device=dev, generator=g),
           torch.randn(k, d, device=dev, generator=g), torch.randn(k, d, device=dev, generator=g)]
    dx, dh = (torch.randn(k, b * t, d, device=dev, generator=g) for _ in range(2))
    res = []
    for fn in (lambda *z: embed_ln(*z, use_triton=True), embed_ln_reference):
        z = [a.clone().requires_grad_() for a in ins]
        x, h = fn(idx, *z)
        res.append(torch.autograd.grad((h * dh).sum() + (x * dx).sum(), z))
    for name, a, c in zip(("wte", "wpe", "w", "b"), *res):
        assert ((a - c).abs().max() / c.abs().max()).item() < 1e-5, name
