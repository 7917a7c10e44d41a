"""pyphase.head: output head + cross-entropy equals the stock computation, values and gradients.

As for the other kernels: on the CPU the Triton kernels run in the interpreter (subprocess with
TRITON_INTERPRET=1) in fp32 and must match `head_ce_reference` to rounding; bf16 accuracy is checked
on CUDA only, against fp64, with the stock bf16 path's error as yardstick."""

from __future__ import annotations

import textwrap

import pytest
import torch

from pyphase.head import head_ce, head_ce_reference

from conftest import OLD_TRITON_INTERPRETER

pytest.importorskip("triton")

INTERPRETED = textwrap.dedent(
    """
    import json, sys, torch
    from pyphase import head
    from pyphase.head import head_ce, head_ce_reference
    out = []
    for k, n, d, v, fwd, bwd in json.loads(sys.argv[1]):
        head.CONFIG.update(fwd=tuple(fwd), bwd=tuple(bwd))
        g = torch.Generator().manual_seed(n + d + v)
        h = torch.randn(k, n, d, generator=g).requires_grad_()
        # the weight as a strided view of one buffer, as the packed model holds it
        flat = (torch.randn(k, d * v + 7, generator=g) * 0.3).requires_grad_()
        w = flat[:, 3:3 + d * v].view(k, d, v)
        t = torch.randint(0, v, (k, n), generator=g)
        dl = torch.rand(k, n, generator=g)
        res = []
        for fn in (lambda *z: head_ce(*z, use_triton=True), head_ce_reference):
            loss = fn(h, w, t)
            res.append([loss, *torch.autograd.grad((loss * dl).sum(), (h, flat))])
        out.append([((a - c).abs().max() / c.abs().max()).item() for a, c in zip(*res)])
    print(json.dumps(out))
    """
)

# (models, rows, d, V, fwd config, bwd config): ragged rows (not a multiple of a tile, nor of a
# program's tiles), V not a power of two (Tiny Shakespeare's 65), d not a power of two.
CASES = [(2, 100, 32, 65, (32, 4), (16, 3, 4)), (1, 77, 48, 20, (16, 4), (16, 2, 4)),
         (3, 64, 16, 16, (64, 4), (64, 1, 4))]


@OLD_TRITON_INTERPRETER
def test_head_ce_matches_stock_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(INTERPRETED, CASES)
    for case, e in zip(CASES, errs):
        assert max(e) < 1e-5, (case, e)  # loss, gradients of h and of the weight's buffer


def test_cpu_path_is_the_stock_computation() -> None:
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(2, 10, 16, generator=g), torch.randn(2, 16, 7, generator=g)
    t = torch.randint(0, 7, (2, 10), generator=g)
    got = head_ce(h, w, t)
    want = torch.nn.functional.cross_entropy(torch.bmm(h, w).reshape(-1, 7), t.reshape(-1), reduction="none")
    assert torch.equal(got, want.view(2, 10))


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="head_ce shapes do not match"):
        head_ce(torch.randn(1, 8, 16), torch.randn(1, 12, 5), torch.zeros(1, 8, dtype=torch.long), use_triton=True)
    with pytest.raises(ValueError, match="V <= 256"):
        head_ce(torch.randn(1, 8, 16), torch.randn(1, 16, 300), torch.zeros(1, 8, dtype=torch.long), use_triton=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 accuracy of the compiled kernels needs CUDA")
@pytest.mark.parametrize("n", [4096, 1000])
def test_bf16_accuracy_on_cuda_matches_the_stock_path(n: int) -> None:
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, d, v = 3, 128, 65
    h = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    w = torch.randn(k, d, v, device=dev, generator=g) * 0.1
    t = torch.randint(0, v, (k, n), device=dev, generator=g)
    dl = torch.rand(k, n, device=dev, generator=g)
    ref_in = [h.double().requires_grad_(), w.double().requires_grad_()]
    loss = head_ce_reference(*ref_in, t)
    ref = [loss, *torch.autograd.grad((loss * dl.double()).sum(), ref_in)]
    errs = {}
    for name, use in (("stock", False), ("triton", True)):
        ins = [h.clone().requires_grad_(), w.clone().requires_grad_()]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = head_ce(*ins, t, use_triton=use)
        outs = [loss, *torch.autograd.grad((loss * dl).sum(), ins)]
        errs[name] = [((a.double() - c).abs().max() / c.abs().max()).item() for a, c in zip(outs, ref)]
    for i in range(3):
        assert errs["triton"][i] <= 2 * errs["stock"][i] + 1e-3, errs
