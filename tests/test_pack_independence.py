"""A config's numbers must not depend on which configs share its pack: the backward kernels' partial
sums (rows per program, and so the order of the parameter gradients' sums) are chosen for a fixed
pack size (`kernels.PARTIALS_PACK`), never from K. Otherwise the same sweep gives other bits on one
GPU (packs of 5) than on two (packs of 3 and 2), or under --max-pack, and at edge-of-stability
learning rates those bits grow into different runs (results/bench/README.md, session 43).

On the CPU the Triton kernels run in the interpreter (subprocess, as in test_mlp / test_layernorm),
with the programs' targets shrunk so that a K-dependent choice would show at test sizes: model 0's
outputs and gradients, computed alone (K = 1) and in a pack of 4 (the other models' data random),
must be equal bit for bit. The same check for the whole CUDA step is in test_train.py."""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

pytest.importorskip("triton")

ALONE_AND_PACKED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import kernels, layernorm, mlp
    from pyphase.layernorm import add_ln, embed_ln
    from pyphase.mlp import gelu_mlp
    kernels.BACKWARD_PROGRAMS, mlp.MIN_SPAN = 16, 16  # small targets: spans would follow K at these sizes
    mlp.set_config("16,32,4,2/dw:16,32,4,2,4096")
    layernorm.CONFIG.update(fwd=(16, 4), bwd=(16, 8, 4), embed_bwd=(16, 4, 8))
    n, d, f, t, v = 256, 32, 64, 16, 11

    def model0(k, build):
        # model 0's tensors from one seed, the other k - 1 models' from another
        g0, g1 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        return [torch.cat([a, b]) for a, b in zip(build(1, g0), build(k - 1, g1))] if k > 1 else build(1, g0)

    def mlp_case(k):
        h, w1, b1, w2, dy = model0(k, lambda m, g: [torch.randn(m, n, d, generator=g), torch.randn(m, d, f, generator=g) * 0.3,
                                                   torch.randn(m, f, generator=g), torch.randn(m, f, d, generator=g) * 0.3,
                                                   torch.randn(m, n, d, generator=g)])
        ins = [z.requires_grad_() for z in (h, w1, b1, w2)]
        y = gelu_mlp(*ins, use_triton=True)
        return [y, *torch.autograd.grad(y, ins, dy)]

    def add_ln_case(k):
        x, r, p, dxn, dh = model0(k, lambda m, g: [torch.randn(m, n, d, generator=g), torch.randn(m, n, d, generator=g),
                                                   torch.randn(m, 3 * d, generator=g), torch.randn(m, n, d, generator=g),
                                                   torch.randn(m, n, d, generator=g)])
        x, r, p = (z.requires_grad_() for z in (x, r, p))
        rb, w, b = (p[:, i * d:(i + 1) * d] for i in range(3))
        xn, h = add_ln(x, r, rb, w, b, use_triton=True)
        return [xn, h, *torch.autograd.grad((h * dh).sum() + (xn * dxn).sum(), (x, r, p))]

    def embed_case(k):
        idx, flat, dx, dh = model0(k, lambda m, g: [torch.randint(0, v, (m, n // t, t), generator=g),
                                                    torch.randn(m, (v + t + 2) * d, generator=g),
                                                    torch.randn(m, n, d, generator=g), torch.randn(m, n, d, generator=g)])
        flat.requires_grad_()
        wte, wpe = flat[:, :v * d].view(-1, v, d), flat[:, v * d:(v + t) * d].view(-1, t, d)
        w, b = flat[:, (v + t) * d:(v + t + 1) * d], flat[:, (v + t + 1) * d:]
        x, h = embed_ln(idx, wte, wpe, w, b, None, use_triton=True)
        return [x, h, *torch.autograd.grad((h * dh).sum() + (x * dx).sum(), flat)]

    out = []
    for case in json.loads(sys.argv[1]):
        fn = {"mlp": mlp_case, "add_ln": add_ln_case, "embed_ln": embed_case}[case]
        alone, packed = fn(1), fn(4)
        out.append([bool(torch.equal(a[:1], b[:1])) for a, b in zip(alone, packed)])
    print(json.dumps(out))
    """
)

CASES = ["mlp", "add_ln", "embed_ln"]


@OLD_TRITON_INTERPRETER
def test_a_models_gradients_are_the_same_bits_alone_and_in_a_pack(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    for case, equal in zip(CASES, run_interpreted(ALONE_AND_PACKED, CASES)):
        assert all(equal), (case, equal)  # outputs, then every input's gradient: model 0's, bit for bit


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="cuBLAS and the CUDA kernels need CUDA")


@CUDA
@pytest.mark.parametrize("rows", [1000, 65536])
def test_cuda_weight_gradient_of_a_lone_model_is_its_bits_in_a_batch(rows: int) -> None:
    """cuBLAS sums K = 1's weight-gradient product in another order than a batch's; `weight_grad`
    gives a lone model the bits it gets in packs of 2, 3 and 5 (and the input gradient's product,
    `project`'s forward, never depended on K)."""
    from pyphase.linear import project, weight_grad

    g = torch.Generator(device="cuda").manual_seed(rows)
    h = torch.randn(5, rows, 128, device="cuda", generator=g).bfloat16()
    dy = torch.randn(5, rows, 384, device="cuda", generator=g).bfloat16()
    alone = weight_grad(h[:1], dy[:1])
    for k in (2, 3, 5):
        assert torch.equal(alone, weight_grad(h[:k], dy[:k])[:1]), k
    w = (torch.randn(5, 128, 128, device="cuda", generator=g) * 0.05).requires_grad_()
    y = torch.randn(5, rows, 128, device="cuda", generator=g).bfloat16().requires_grad_()
    dz = torch.randn(5, rows, 128, device="cuda", generator=g).bfloat16()
    grads = []
    for k in (1, 3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z = project(y[:k], w[:k])
        assert z.dtype == torch.bfloat16 and torch.equal(z, torch.bmm(y[:k], w[:k].bfloat16()))
        grads.append(torch.autograd.grad(z, (y, w), dz[:k]))
    for a, b in zip(*grads):
        assert torch.equal(a[:1], b[:1])


@CUDA
def test_cuda_mean_loss_is_the_same_bits_in_any_pack_with_torchs_gradient() -> None:
    from pyphase.head import mean_loss

    g = torch.Generator(device="cuda").manual_seed(0)
    rows = (torch.rand(5, 65536, device="cuda", generator=g) * 4).requires_grad_()
    means = [mean_loss(rows[:k]) for k in (1, 2, 3, 5)]
    assert all(torch.equal(m[:1], means[0]) for m in means)
    torch.testing.assert_close(means[-1], rows.mean(dim=1), rtol=1e-6, atol=0)
    mine, = torch.autograd.grad(means[-1].sum(), rows)
    stock, = torch.autograd.grad(rows.mean(dim=1).sum(), rows)
    assert torch.equal(mine, stock)
