"""pyphase.optim: the fused clip + AdamW / SGD kernels equal the torch ops they replace.

On the CPU the kernels run in Triton's interpreter (subprocess with TRITON_INTERPRET=1); on CUDA
compiled, against the same torch ops on the same device. Cases cover rows that are not a multiple
of a program's block, a model that is no longer alive with a NaN gradient (its parameters must not
move, its moments keep decaying), clipped and unclipped models, and several steps in a row."""

from __future__ import annotations

import textwrap

import pytest
import torch

from pyphase import optim

from conftest import OLD_TRITON_INTERPRETER

pytest.importorskip("triton")

# Runs `steps` updates of both forms from the same start and returns the largest relative
# difference of parameters, first and second moments, and of the gradient norms.
COMPARE = textwrap.dedent(
    """
    import torch
    from pyphase import optim

    def compare(kind, k, p, steps, dev):
        g0 = torch.Generator().manual_seed(k * 1000 + p)
        params = torch.randn(k, p, generator=g0).to(dev)
        alive = torch.ones(k, dtype=torch.bool)
        alive[-1] = k == 1
        alive = alive.to(dev)
        lr = (torch.rand(k, generator=g0) * 1e-2).to(dev)
        wd = torch.full((k,), 0.1).to(dev)
        states = []
        for fused in (True, False):
            st = [params.clone(), torch.zeros(k, p, device=dev), torch.zeros(k, p, device=dev)]
            norms = []
            g_gen = torch.Generator().manual_seed(7)
            for s in range(steps):
                g = (torch.randn(k, p, generator=g_gen) * 3).to(dev)
                g[-1, 5] = float("nan") if k > 1 else g[-1, 5]
                norm = optim.grad_norm(g, use_triton=fused)
                norms.append(torch.where(torch.isfinite(norm), norm, 0.0))
                coef = torch.clamp(1.0 / (norm + 1e-6), max=1.0)
                t = torch.tensor(s, device=dev)
                lr_t = lr * alive
                if kind == "adamw":
                    optim.adamw_(st[0], g, st[1], st[2], alive, coef, lr_t, wd, t, (0.9, 0.95), 1e-8, use_triton=fused)
                else:
                    optim.sgd_(st[0], g, st[1], alive, coef, lr_t, wd, 0.9, use_triton=fused)
            states.append(st + [torch.stack(norms)])
        if k > 1:  # the dead model's parameters did not move
            assert torch.equal(states[0][0][-1], params[-1]), "dead model moved"
        return [((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(*states)]
    """
)

INTERPRETED = COMPARE + textwrap.dedent(
    """
    import json, sys
    print(json.dumps([compare(kind, k, p, steps, "cpu") for kind, k, p, steps in json.loads(sys.argv[1])]))
    """
)

# (optimizer, models, parameters per model, steps): rows shorter than, equal to, and longer than a
# program's block (4096), one model alone, and SGD.
CASES = [("adamw", 3, 10_000, 3), ("adamw", 1, 4096, 2), ("adamw", 2, 100, 4), ("sgd", 3, 5000, 3)]


@OLD_TRITON_INTERPRETER
def test_fused_update_matches_torch_ops_in_the_interpreter(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    errs = run_interpreted(INTERPRETED, CASES)
    for case, e in zip(CASES, errs):
        assert max(e) < 2e-6, (case, e)  # parameters, moment(s), norms


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need CUDA")
@pytest.mark.parametrize("case", CASES + [("adamw", 5, 842_752, 5)])
def test_fused_update_matches_torch_ops_on_cuda(case: tuple[str, int, int, int]) -> None:
    scope: dict[str, object] = {}
    exec(COMPARE, scope)
    errs = scope["compare"](*case, "cuda")  # type: ignore[operator]
    assert max(errs) < 2e-6, (case, errs)


def test_the_cpu_path_is_the_torch_ops() -> None:
    """Without CUDA the dispatching functions run the reference ops exactly."""
    g = torch.randn(2, 300)
    assert torch.equal(optim.grad_norm(g), g.square().sum(dim=1).sqrt())
    a = [torch.randn(2, 300), torch.randn(2, 300), torch.rand(2, 300)]  # parameters, m, v
    b = [z.clone() for z in a]
    p0 = a[0].clone()
    args = (torch.tensor([True, False]), torch.tensor([0.5, 1.0]), torch.tensor([1e-3, 0.0]), torch.tensor([0.1, 0.1]))
    optim.adamw_(a[0], g, a[1], a[2], *args, torch.tensor(3), (0.9, 0.999), 1e-8)
    optim.adamw_reference_(b[0], g, b[1], b[2], *args, torch.tensor(3), (0.9, 0.999), 1e-8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(a[0][1], p0[1]) and not torch.equal(a[0][0], p0[0])  # only the live model moved


def test_bad_shapes_are_value_errors() -> None:
    p = torch.zeros(2, 10)
    one = torch.ones(2)
    with pytest.raises(ValueError, match="contiguous"):
        optim.sgd_(p, torch.zeros(3, 10), p.clone(), one.bool(), one, one, one, 0.9, use_triton=True)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        optim.sgd_(p, p.clone(), p.clone(), torch.ones(3).bool(), one, one, one, 0.9, use_triton=True)
