"""pyphase.attention: the Triton causal attention equals the stock computation.

On the CPU the kernels run in Triton's interpreter (a subprocess with TRITON_INTERPRET=1, which
Triton reads when the kernels are defined) in fp32, where they must match scaled_dot_product_attention
to rounding. The interpreter multiplies bf16 tiles wrongly (a Triton limitation), so bf16 accuracy is
checked on CUDA only, against an fp64 reference, with the stock bf16 path's own error as the yardstick."""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase.attention import attention_reference, causal_attention

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, os, sys, torch
    from pyphase import attention
    from pyphase.attention import attention_reference, causal_attention
    default = dict(attention.CONFIG)
    out = []
    for (k, b, t, nh, hd), config in json.loads(sys.argv[1]):
        attention.CONFIG.update(default, **{kind: tuple(v) for kind, v in config.items()})
        g = torch.Generator().manual_seed(k * 1000 + t)
        d = nh * hd
        qkv = torch.randn(k, b * t, 3 * d, generator=g).requires_grad_()
        bias = (torch.randn(k, 3 * d, generator=g) * 0.5).requires_grad_()
        do = torch.randn(k, b * t, d, generator=g)
        y1 = causal_attention(qkv, bias, b, t, nh, use_triton=True)
        g1 = torch.autograd.grad(y1, (qkv, bias), do)
        os.environ["PYPHASE_ATTN_MASK"] = "all"  # every tile masked: the same bits
        y0 = causal_attention(qkv, bias, b, t, nh, use_triton=True)
        g0 = torch.autograd.grad(y0, (qkv, bias), do)
        del os.environ["PYPHASE_ATTN_MASK"]
        y2 = attention_reference(qkv, bias, b, t, nh)
        g2 = torch.autograd.grad(y2, (qkv, bias), do)
        err = [(y1 - y2).abs().max().item()] + [(a - c).abs().max().item() / c.abs().max().item() for a, c in zip(g1, g2)]
        out.append(err + [all(torch.equal(a, c) for a, c in zip((y1, *g1), (y0, *g0)))])
    print(json.dumps(out))
    """
)

# (models K, sequences per model B, context T, heads, head dim): block-aligned and ragged contexts,
# one and several blocks (256: several, all full), head dims 16 and 32.
SHAPES = [(2, 2, 40, 2, 16), (1, 2, 64, 4, 32), (2, 1, 100, 2, 32), (1, 1, 130, 1, 16), (1, 1, 256, 2, 16)]


# Launch configurations besides the default: query blocks smaller / larger than key blocks, so the
# diagonal (masked) and off-diagonal (unmasked) steps split differently; in the last, the dq pass
# has twice as many blocks as the dk/dv pass (the bias gradient's partial sums of unequal counts).
CONFIGS = [{}, {"fwd": (32, 64, 4, 2), "bwd": (64, 32, 32, 64, 4, 2)}, {"fwd": (64, 16, 4, 2), "bwd": (16, 64, 64, 16, 4, 2)},
           {"bwd": (16, 64, 32, 16, 4, 2)}]


@OLD_TRITON_INTERPRETER
@pytest.mark.parametrize("config", CONFIGS)
def test_triton_kernels_match_sdpa_in_the_interpreter(run_interpreted, config) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(INTERPRETED, [[shape, config] for shape in SHAPES])
    for shape, (out_err, dqkv_rel, dbias_rel, same_masking_all) in zip(SHAPES, errs):
        assert out_err < 1e-5, (shape, out_err)
        assert dqkv_rel < 1e-5, (shape, dqkv_rel)
        assert dbias_rel < 1e-5, (shape, dbias_rel)
        # the masks only where needed (the default) and on every tile (PYPHASE_ATTN_MASK=all): they
        # keep every value elsewhere, so the same bits
        assert same_masking_all, shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels' bits need CUDA")
@pytest.mark.parametrize("t", [256, 100])
def test_masking_only_the_diagonal_tiles_gives_the_same_bits_on_cuda(t: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """bf16 on the GPU, where an unmasked tile could fuse the score's scaling with the subtraction
    that follows into one multiply-add (`attention._scaled` prevents it): the same bits either way."""
    g = torch.Generator(device="cuda").manual_seed(1)
    k, b, nh, d = 2, 8, 4, 128
    qkv = (torch.randn(k, b * t, 3 * d, device="cuda", generator=g) * 1.5).bfloat16()
    bias = (torch.randn(k, 3 * d, device="cuda", generator=g) * 0.2).bfloat16()
    do = torch.randn(k, b * t, d, device="cuda", generator=g).bfloat16()
    res = []
    for mask in ("all", ""):
        monkeypatch.setenv("PYPHASE_ATTN_MASK", mask)
        for bias_in_qkv in (False, True):
            ins = [qkv.clone().requires_grad_(), bias.clone().requires_grad_()]
            y = causal_attention(ins[0], ins[1], b, t, nh, use_triton=True, bias_in_qkv=bias_in_qkv)
            res.append([y, *torch.autograd.grad(y, ins, do)])
    for a, c in zip(res[:2], res[2:]):
        assert all(torch.equal(x, z) for x, z in zip(a, c))


def test_cpu_path_is_the_stock_computation() -> None:
    """Without CUDA, `causal_attention` is `attention_reference` (bias add + SDPA), bit for bit."""
    g = torch.Generator().manual_seed(3)
    qkv, bias = torch.randn(2, 3 * 16, 3 * 32, generator=g), torch.randn(2, 3 * 32, generator=g)
    assert torch.equal(causal_attention(qkv, bias, 3, 16, 2), attention_reference(qkv, bias, 3, 16, 2))


def test_shape_mismatch_is_a_clear_error() -> None:
    qkv, bias = torch.randn(1, 50, 96), torch.randn(1, 96)
    with pytest.raises(ValueError, match="does not hold 2 sequences of 16"):
        causal_attention(qkv, bias, 2, 16, 2, use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 accuracy of the compiled kernels needs CUDA")
@pytest.mark.parametrize("t", [256, 100])
def test_bf16_accuracy_on_cuda_matches_the_stock_path(t: int) -> None:
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, b, nh, d = 2, 8, 4, 128
    qkv = (torch.randn(k, b * t, 3 * d, device=dev, generator=g) * 1.5).bfloat16()
    bias = (torch.randn(k, 3 * d, device=dev, generator=g) * 0.2).bfloat16()
    do = torch.randn(k, b * t, d, device=dev, generator=g).bfloat16()
    ref_in = [z.double().requires_grad_() for z in (qkv, bias)]
    ref_y = attention_reference(ref_in[0], ref_in[1], b, t, nh)
    ref_g = torch.autograd.grad(ref_y, ref_in, do.double())
    errs = {}
    for name, use in (("stock", False), ("triton", True)):
        ins = [z.clone().requires_grad_() for z in (qkv, bias)]
        y = causal_attention(ins[0], ins[1], b, t, nh, use_triton=use)
        gr = torch.autograd.grad(y, ins, do)
        errs[name] = [(y.double() - ref_y).abs().max().item()] + [
            ((a.double() - c).abs().max() / c.abs().max()).item() for a, c in zip(gr, ref_g)]
    for i in range(3):
        assert errs["triton"][i] <= 2 * errs["stock"][i] + 1e-3, errs
