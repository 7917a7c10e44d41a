"""The residual stream's gradient through carriers (PYPHASE_RESIDUAL=bf16grad, `kernels.call_stream`).

The fp32 stream leaves `embed_ln` and each `mlp_block` non-differentiable, beside a stride-0
"carrier" in the gradient's dtype; the next block takes the carrier, and its backward pass returns
the stream's gradient as the carrier's. With the carrier in fp32 that must change nothing (the
same bits as autograd's own path); in bf16 the forward pass keeps its bits, the stream's gradient
arrives in bf16 and the parameter gradients stay within bf16 rounding of fp32's. On the CPU the
kernels run in Triton's interpreter (fp32 tables and weights; a subprocess); on CUDA the whole
packed model is compared with and without the switch."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase.layernorm import embed_ln_stream
    from pyphase.mlp_block import mlp_block_stream
    from test_mlp_block import _inputs

    def run(k, n, t, d, f, v, grad_dtype, fused_second):
        g = torch.Generator().manual_seed(7)
        idx = torch.randint(0, v, (k, n // t, t), generator=g)
        emb = [torch.randn(k, v, d, generator=g), torch.randn(k, t, d, generator=g) * 0.3,
               1 + 0.2 * torch.randn(k, d, generator=g), 0.2 * torch.randn(k, d, generator=g)]
        blocks = [_inputs(k, n, d, f, g)[1:] for _ in range(2)]
        leaves = [z.requires_grad_() for z in emb + blocks[0] + blocks[1]]
        dh = torch.randn(k, n, d, generator=g)
        x, h, c = embed_ln_stream(idx, *emb, None, grad_dtype, use_triton=True)
        seen = []
        if c is not None:
            c.register_hook(lambda gr: seen.append(str(gr.dtype)))
        for i, ins in enumerate(blocks):
            p = ins[0] + h  # the branch output depends on the LayerNorm output, as attention's does
            x, h, c = mlp_block_stream(x, p, *ins[1:], c, use_triton=fused_second or i == 0)
        grads = torch.autograd.grad((h * dh).sum(), leaves)
        return x, h, c is None, grads, seen

    out = []
    for k, n, t, d, f, v in json.loads(sys.argv[1]):
        base = {fused: run(k, n, t, d, f, v, None, fused) for fused in (True, False)}
        case = {}
        for name, gd, fused in (("fp32", torch.float32, True), ("bf16", torch.bfloat16, True),
                                ("fp32_fallback", torch.float32, False), ("bf16_fallback", torch.bfloat16, False)):
            x0, h0, _, ref, _ = base[fused]
            x, h, no_carrier, grads, seen = run(k, n, t, d, f, v, gd, fused)
            case[name] = {"forward_equal": bool(torch.equal(x, x0) and torch.equal(h, h0)),
                          "grads_equal": all(torch.equal(a, b) for a, b in zip(grads, ref)),
                          "max_rel": max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(grads, ref)),
                          "carrier_out": not no_carrier, "seen": seen}
        out.append(case)
    print(json.dumps(out))
    """
)

CASES = [(2, 64, 32, 32, 128, 20)]  # (models, rows, T, d, hidden, vocabulary)


@OLD_TRITON_INTERPRETER
def test_carriers_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    here = os.path.dirname(__file__)
    res = run_interpreted(f"import sys; sys.path.insert(0, {here!r})\n" + INTERPRETED, CASES)
    for shape, case in zip(CASES, res):
        for name, r in case.items():
            assert r["forward_equal"], (shape, name)  # the forward pass never changes
        # an fp32 carrier is autograd's own path, bit for bit, also through the fallback (rejoin)
        assert case["fp32"]["grads_equal"] and case["fp32_fallback"]["grads_equal"], shape
        assert case["fp32"]["carrier_out"] and not case["fp32_fallback"]["carrier_out"], shape
        # a bf16 carrier: the stream's gradient arrived in bf16 at the embedding (the two blocks'
        # carriers were read back), the parameter gradients within bf16 rounding, and not equal
        assert case["bf16"]["seen"] == ["torch.bfloat16"], (shape, case["bf16"]["seen"])
        for name in ("bf16", "bf16_fallback"):
            assert not case[name]["grads_equal"] and case[name]["max_rel"] < 2e-2, (shape, name, case[name])
        # the fallback takes the gradient back to fp32 before the embedding
        assert case["bf16_fallback"]["seen"] == ["torch.bfloat16"], shape


def test_rejoin_sends_the_gradient_to_the_carrier_in_its_dtype() -> None:
    from pyphase.kernels import carrier, rejoin

    x = torch.randn(2, 3)
    c = carrier(x, torch.bfloat16).requires_grad_()
    assert c.stride() == (0, 0) and c.shape == x.shape
    y = rejoin(x, c)
    assert torch.equal(y, x) and y.requires_grad
    (g,) = torch.autograd.grad((y * torch.arange(6.0).view(2, 3)).sum(), c)
    assert g.dtype == torch.bfloat16 and torch.equal(g.float(), torch.arange(6.0).view(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels under autocast need CUDA")
def test_cuda_bf16grad_keeps_the_forward_bits_and_rounds_only_the_stream_gradient(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase.model import PackedNanoTransformer, Shape

    shape = Shape(vocab_size=65, d_model=128, n_layer=4, n_head=4, block_size=256)
    model = PackedNanoTransformer(shape, [0, 1]).cuda()
    g = torch.Generator(device="cuda").manual_seed(3)
    idx = torch.randint(0, 65, (2, 16, 256), generator=g, device="cuda")
    tgt = torch.randint(0, 65, (2, 16, 256), generator=g, device="cuda")
    res = {}
    for mode in ("fp32", "bf16grad", "bf16", ""):
        monkeypatch.setenv("PYPHASE_RESIDUAL", mode)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.losses(idx, tgt)
        res[mode] = (loss.detach(), torch.autograd.grad(loss.sum(), model.leaves))
    (l32, g32), (l16, g16) = res["fp32"], res["bf16grad"]
    # unset is the bf16 stream on CUDA (model.residual_mode), bit for bit
    assert torch.equal(res[""][0], res["bf16"][0]) and all(torch.equal(a, b) for a, b in zip(res[""][1], res["bf16"][1]))
    assert not torch.equal(res["bf16"][0], l32)  # the bf16 stream rounds the forward pass too
    assert torch.equal(l32, l16)
    rel = {n: ((a - b).abs().max() / b.abs().max()).item() for n, a, b in zip(model.names, g16, g32)}
    assert max(rel.values()) < 2e-2, rel
    assert any(v > 0 for v in rel.values()), rel  # the switch took effect
    # the last block's MLP sees the stream's gradient before any rounding
    assert rel["h3.fc2_w"] == 0.0, rel
