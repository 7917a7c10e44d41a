"""NanoTransformer shapes and the packed form's equivalence with separate models."""

import pytest
import torch

from pyphase.model import NanoTransformer, PackedNanoTransformer, Shape

TINY = Shape(vocab_size=29, d_model=32, n_layer=2, n_head=4, block_size=16)


def test_default_shape_has_the_issue_parameter_count():
    # 877,312 with V = 200 is the figure the trainer issue quotes for the seed's model.
    assert Shape(200).n_params == 877_312
    assert sum(p.numel() for p in NanoTransformer(Shape(200)).parameters()) == 877_312
    assert PackedNanoTransformer(Shape(65), [0]).n_params == 842_752


def test_same_seed_gives_same_weights_and_different_seeds_differ():
    a, b, c = (PackedNanoTransformer(TINY, [s]) for s in (1, 1, 2))
    assert torch.equal(a.flat, b.flat)
    assert not torch.equal(a.flat, c.flat)


def test_packed_losses_and_grads_equal_separate_models():
    seeds = [3, 7, 11]
    singles = [NanoTransformer(TINY, seed=s) for s in seeds]
    packed = PackedNanoTransformer(TINY, seeds)
    x = torch.randint(0, TINY.vocab_size, (3, 5, TINY.block_size), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, TINY.vocab_size, (3, 5, TINY.block_size), generator=torch.Generator().manual_seed(1))
    losses = packed.losses(x, y)
    grads = packed.flat_grad(list(torch.autograd.grad(losses.sum(), packed.leaves)))
    for k, m in enumerate(singles):
        _, loss = m(x[k], y[k])
        g = torch.autograd.grad(loss, [m.p(n) for n in packed.names])
        flat_g = torch.cat([t.reshape(-1) for t in g])
        assert losses[k].item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
        torch.testing.assert_close(grads[k], flat_g, rtol=1e-4, atol=1e-6)


def test_parameters_are_views_of_the_flat_buffer():
    packed = PackedNanoTransformer(TINY, [0, 1])
    with torch.no_grad():
        packed.flat.add_(1.0)
    assert torch.equal(packed.view("wte", packed.flat), packed._leaf["wte"])


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        Shape(10, d_model=30, n_head=4)
    with pytest.raises(ValueError, match="positive"):
        Shape(0)
