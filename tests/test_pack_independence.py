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
