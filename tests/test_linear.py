"""pyphase.linear: the QKV projection with its bias in the GEMM's epilogue, and the attention kernels
reading that projection without adding the bias (`causal_attention(..., bias_in_qkv=True)`).

On the CPU the kernels run in Triton's interpreter in fp32: the GEMM must match the stock bmm + bias
to rounding, and attention with the bias already in q, k, v must give exactly what it gives adding
the bias itself (the same fp32 sums, in the same kernels). On CUDA the packed model's step must give
the same bits with the GEMM (the default) as with `PYPHASE_LINEAR=torch` (bmm, bias added by the
attention kernels as they load)."""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase.attention import causal_attention
from pyphase.linear import linear_bias, linear_bias_reference

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, os, sys, torch
    from pyphase import linear
    from pyphase.attention import causal_attention
    from pyphase.linear import linear_bias, linear_bias_reference
    def attention_bits():
        # attention with the bias already in q, k, v: the same output and gradients, bit for bit
        kk, b_, t, nh, hd = 2, 2, 100, 2, 16
        g = torch.Generator().manual_seed(7)
        d = nh * hd
        qkv = torch.randn(kk, b_ * t, 3 * d, generator=g).requires_grad_()
        bias = (torch.randn(kk, 3 * d, generator=g) * 0.5).requires_grad_()
        do = torch.randn(kk, b_ * t, d, generator=g)
        ya = causal_attention(qkv, bias, b_, t, nh, use_triton=True)
        ga = torch.autograd.grad(ya, (qkv, bias), do)
        yb = causal_attention(qkv + bias[:, None].detach(), bias, b_, t, nh, use_triton=True, bias_in_qkv=True)
        gb = torch.autograd.grad(yb, (qkv, bias), do)
        return [torch.equal(ya, yb), *(torch.equal(x, y) for x, y in zip(ga, gb))]
    out = []
    for case in json.loads(sys.argv[1]):
        if case == "attention":
            out.append(attention_bits())
            continue
        k, n, d, f, cfg, tma = case
        os.environ["PYPHASE_LINEAR_TMA"] = tma
        linear.CONFIG["fwd"] = linear.CONFIG["fwd_tma"] = tuple(cfg)
        g = torch.Generator().manual_seed(n + f)
        h = torch.randn(k, n, d, generator=g).requires_grad_()
        w = (torch.randn(k, d, f, generator=g) * 0.2).requires_grad_()
        b = torch.randn(k, f, generator=g).requires_grad_()
        dy = torch.randn(k, n, f, generator=g)
        y1 = linear_bias(h, w, b, use_triton=True)
        g1 = torch.autograd.grad(y1, (h, w, b), dy)
        y2 = linear_bias_reference(h, w, b)
        g2 = torch.autograd.grad(y2, (h, w, b), dy)
        errs = [(y1 - y2).abs().max().item() / y2.abs().max().item()]
        errs += [(a - c).abs().max().item() / c.abs().max().item() for a, c in zip(g1, g2)]
        out.append(errs)
    print(json.dumps(out))
    """
)

# (models, rows, inner width, output width, launch (rows, columns, warps, stages, programs per
# multiprocessor; the interpreter counts 4), PYPHASE_LINEAR_TMA): whole tiles, ragged rows and
# columns, an inner width below one tile, fewer programs than tiles; each with pointer loads and
# with TMA descriptors (whose bounds must stop a ragged tile at its own model's rows).
CASES = [(*c, tma) for tma in ("0", "1") for c in
         [(2, 128, 32, 96, [64, 32, 4, 2, 1]), (1, 100, 32, 48, [32, 32, 4, 3, 2]), (2, 70, 24, 40, [32, 16, 4, 1, 1])]]


@OLD_TRITON_INTERPRETER
def test_gemm_matches_bmm_and_attention_reads_the_added_bias_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(INTERPRETED, [*CASES, "attention"])
    for case, e in zip(CASES, errs[:-1]):
        assert max(e) < 1e-5, (case, e)
    assert errs[-1] == [True, True, True], errs[-1]


def test_cpu_path_is_the_stock_computation() -> None:
    g = torch.Generator().manual_seed(1)
    h, w, b = torch.randn(2, 10, 8, generator=g), torch.randn(2, 8, 12, generator=g), torch.randn(2, 12, generator=g)
    assert torch.equal(linear_bias(h, w, b), linear_bias_reference(h, w, b))
    with pytest.raises(ValueError, match="linear_bias shapes do not match"):
        linear_bias(h, w, b[:, :5], use_triton=True)


def test_stock_attention_with_the_bias_in_qkv_gives_the_bias_its_gradient() -> None:
    """Without the kernels (CPU), bias_in_qkv: the same output as adding the bias itself, and the
    bias's gradient (the column sums of qkv's) although the producer took it as a constant."""
    g = torch.Generator().manual_seed(2)
    qkv = torch.randn(2, 3 * 16, 3 * 32, generator=g, requires_grad=True)
    bias = torch.randn(2, 3 * 32, generator=g, requires_grad=True)
    do = torch.randn(2, 3 * 16, 32, generator=g)
    ya = causal_attention(qkv, bias, 3, 16, 2)
    ga = torch.autograd.grad(ya, (qkv, bias), do)
    yb = causal_attention(qkv + bias[:, None].detach(), bias, 3, 16, 2, bias_in_qkv=True)
    gb = torch.autograd.grad(yb, (qkv, bias), do)
    assert torch.equal(ya, yb)
    assert torch.equal(ga[0], gb[0])
    torch.testing.assert_close(ga[1], gb[1], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
@pytest.mark.parametrize("tma", ["0", "1"])
def test_cuda_step_has_the_same_bits_with_and_without_the_gemm(tma: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase.model import PackedNanoTransformer, Shape

    monkeypatch.setenv("PYPHASE_LINEAR_TMA", tma)
    shape = Shape(vocab_size=65, d_model=128, n_layer=2, n_head=4, mlp_ratio=4, block_size=256)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 65, (2, 4, 256), generator=g).cuda()
    tgt = torch.randint(0, 65, (2, 4, 256), generator=g).cuda()
    out = {}
    for mode in ("torch", ""):
        monkeypatch.setenv("PYPHASE_LINEAR", mode)
        model = PackedNanoTransformer(shape, seeds=[0, 1]).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses = model.losses(idx, tgt)
        grads = torch.autograd.grad(losses.sum(), model.leaves)
        out[mode] = (losses.detach(), model.flat_grad(list(grads)))
    assert torch.equal(out["torch"][0], out[""][0])
    assert torch.equal(out["torch"][1], out[""][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
def test_cuda_fp32_takes_the_stock_path_and_autocast_the_kernel() -> None:
    from pyphase import linear

    g = torch.Generator(device="cuda").manual_seed(3)
    h = torch.randn(2, 4096, 128, device="cuda", generator=g)
    w = torch.randn(2, 128, 384, device="cuda", generator=g) * 0.1
    b = torch.randn(2, 384, device="cuda", generator=g)
    assert not linear.supported(h, w)  # fp32: bmm + bias, as before
    assert torch.equal(linear_bias(h, w, b), linear_bias_reference(h, w, b))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert linear.supported(h, w)
        y = linear_bias(h, w, b)
        ref = linear_bias_reference(h.bfloat16(), w, b)
    assert y.dtype == torch.bfloat16 and torch.equal(y, ref)


WGRAD = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import linear
    from pyphase.linear import weight_grad
    out = []
    for k, n, i, o, cfg in json.loads(sys.argv[1]):
        linear.CONFIG["wgrad"] = tuple(cfg)
        g = torch.Generator().manual_seed(n + o)
        h = torch.randn(k, n, i, generator=g)
        dy = torch.randn(k, n, o, generator=g)
        got = weight_grad(h, dy, use_triton=True)
        ref = h.double().transpose(1, 2).bmm(dy.double())
        err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
        # each model alone (K = 1) and the pack's last model moved to the front: the same bits
        alone = [torch.equal(weight_grad(h[m:m + 1], dy[m:m + 1], use_triton=True)[0], got[m]) for m in range(k)]
        flip = weight_grad(h.flip(0), dy.flip(0), use_triton=True)
        out.append([err, all(alone), torch.equal(flip.flip(0), got), list(got.shape)])
    print(json.dumps(out))
    """
)

# (models, rows, inner width, output width, launch (rows a loop step, output columns, warps, stages,
# programs aimed at)): many spans with a ragged last one, an output width below and above one tile
# (ragged column tile), an inner width below its padded tile, one span.
WGRAD_CASES = [(3, 300, 32, 96, [16, 64, 4, 2, 40]), (2, 130, 24, 40, [32, 32, 4, 1, 64]), (3, 50, 16, 16, [64, 16, 4, 3, 1])]


@OLD_TRITON_INTERPRETER
def test_weight_grad_kernel_is_the_product_with_the_same_bits_alone_and_in_any_pack(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    """The weight-gradient kernel (h^T @ dy per model, spans of rows summed by `sum_parts`) equals the
    product to fp32 rounding, and a model's result does not depend on the pack: alone, in a pack of
    2 or 3, at another position, the same bits (the spans are chosen without K)."""
    res = run_interpreted(WGRAD, WGRAD_CASES)
    for (k, n, i, o, _), (err, alone, flip, shape) in zip(WGRAD_CASES, res):
        assert shape == [k, i, o]
        assert err < 1e-5, (k, n, i, o, err)
        assert alone and flip, (k, n, i, o)


def test_weight_grad_takes_cublas_on_the_cpu_and_when_switched(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase.linear import wgrad_supported

    h, dy = torch.randn(2, 8, 4).bfloat16(), torch.randn(2, 8, 6).bfloat16()
    assert not wgrad_supported(h, dy)  # CPU
    if torch.cuda.is_available():
        hc, dc = h.cuda(), dy.cuda()
        assert wgrad_supported(hc, dc)
        assert not wgrad_supported(hc.float(), dc.float())  # fp32 takes cuBLAS
        monkeypatch.setenv("PYPHASE_WGRAD", "cublas")
        assert not wgrad_supported(hc, dc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
@pytest.mark.parametrize("n, o", [(65_536, 384), (32_768, 128), (1000, 48)])
def test_cuda_weight_grad_kernel_rounds_the_product_once_and_ignores_the_pack(n, o) -> None:
    from pyphase.linear import weight_grad

    g = torch.Generator(device="cuda").manual_seed(n)
    h = torch.randn(3, n, 128, device="cuda", generator=g).bfloat16()
    dy = (torch.randn(3, n, o, device="cuda", generator=g) * 0.01).bfloat16()
    got = weight_grad(h, dy)
    assert got.dtype == torch.bfloat16 and got.shape == (3, 128, o)
    ref = h.double().transpose(1, 2).bmm(dy.double())
    # one rounding to bf16 of an fp32 sum: within a bf16 ulp and a little of the reference
    assert ((got.double() - ref).abs() <= ref.abs() * 2 ** -8 + 1e-6 * ref.abs().max()).all()
    for m in range(3):
        assert torch.equal(weight_grad(h[m:m + 1], dy[m:m + 1])[0], got[m])
    assert torch.equal(weight_grad(h[[2, 0]], dy[[2, 0]]), got[[2, 0]])
