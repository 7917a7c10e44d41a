"""The kernels' programs run last to first where `kernels.reversed_order` says so (PYPHASE_ORDER):
only the order changes, so every output is the same, bit for bit, and every tile is still written.

On the CPU the kernels run in Triton's interpreter (a subprocess; every `torch.empty` buffer filled
with a sentinel, so a tile no program writes would show); the reversed kernels also compile for
sm_90 here (Triton brings ptxas). On CUDA a pack trains with every kernel reversed and with none."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import OLD_TRITON_INTERPRETER

from pyphase import kernels

triton = pytest.importorskip("triton")

INTERPRETED = """
import json, os, sys, torch
_empty, _empty_like, _new_empty = torch.empty, torch.empty_like, torch.Tensor.new_empty
def poison(t):
    return t.fill_(777.0) if t.is_floating_point() else t
torch.empty = lambda *a, **kw: poison(_empty(*a, **kw))
torch.empty_like = lambda *a, **kw: poison(_empty_like(*a, **kw))
torch.Tensor.new_empty = lambda self, *a, **kw: poison(_new_empty(self, *a, **kw))
from pyphase import kernels
from pyphase.attention import causal_attention
from pyphase.head import head_ce
from pyphase.layernorm import embed_ln
from pyphase.linear import linear_bias
from pyphase.mlp_block import mlp_block

def run():
    g = torch.Generator().manual_seed(0)
    k, b, t, d, v = 2, 3, 32, 32, 11
    leaf = lambda *s, shift=0.0: (torch.randn(*s, generator=g) * 0.3 + shift).requires_grad_()
    emb = [leaf(k, v, d), leaf(k, t, d), leaf(k, d, shift=1.0), leaf(k, d)]
    att = [leaf(k, d, 3 * d), leaf(k, 3 * d)]
    blk = [leaf(k, d, d), leaf(k, d), leaf(k, d, shift=1.0), leaf(k, d), leaf(k, d, 4 * d), leaf(k, 4 * d),
           leaf(k, 4 * d, d), leaf(k, d), leaf(k, d, shift=1.0), leaf(k, d)]
    hw = leaf(k, d, v)
    leaves = emb + att + blk + [hw]
    idx = torch.randint(0, v, (k, b, t), generator=g)
    tgt = torch.randint(0, v, (k, b * t), generator=g)
    x, h = embed_ln(idx, *emb, use_triton=True)
    qkv = linear_bias(h, att[0], att[1].detach(), use_triton=True)
    y = causal_attention(qkv, att[1], b, t, 2, bias_in_qkv=True, use_triton=True)
    x, h2 = mlp_block(x, y @ blk[0], *blk[1:], use_triton=True)
    losses = head_ce(h2, hw, tgt, use_triton=True).mean(dim=1)
    grads = torch.autograd.grad(losses.sum(), leaves)
    return [losses.detach(), x.detach(), h2.detach(), *grads]

out = []
for order in json.loads(sys.argv[1]):
    os.environ["PYPHASE_ORDER"] = order
    res = run()
    out.append({"order": order, "bits": [r.double().flatten().tolist() for r in res],
                "sentinel_left": any(bool((r == 777.0).any()) for r in res)})
print(json.dumps(out))
"""


@OLD_TRITON_INTERPRETER
def test_reversed_programs_give_the_same_bits_and_write_every_tile(run_interpreted) -> None:  # type: ignore[no-untyped-def]
    """A block's forward and backward (embedding + LayerNorm, QKV GEMM, attention, the fused MLP
    half, head) with every kernel's programs reversed, with none, and with every other one: the
    same losses, stream, LayerNorm output and gradients, and no output element left unwritten."""
    every = ",".join(kernels.ORDER_KEYS)
    alternate = ",".join(kernels.ORDER_KEYS[::2])
    ref, rev, alt = run_interpreted(INTERPRETED, ["none", every, alternate])
    assert not ref["sentinel_left"] and not rev["sentinel_left"] and not alt["sentinel_left"]
    assert len(ref["bits"]) == 20  # losses, stream, LayerNorm output, 17 gradients
    for other in (rev, alt):
        for i, (a, b) in enumerate(zip(ref["bits"], other["bits"], strict=True)):
            assert a == b, f"output {i} differs with PYPHASE_ORDER={other['order']}"


def test_order_switch_names_kernels_and_rejects_unknown_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYPHASE_ORDER", "dw, dkdv")
    assert kernels.reversed_order("dw") and kernels.reversed_order("dkdv") and not kernels.reversed_order("dq")
    monkeypatch.setenv("PYPHASE_ORDER", "none")
    assert not any(kernels.reversed_order(k) for k in kernels.ORDER_KEYS)
    monkeypatch.setenv("PYPHASE_ORDER", "dw,mlp")
    with pytest.raises(ValueError, match="PYPHASE_ORDER: unknown kernel.*'mlp'"):
        kernels.reversed_order("dw")
    monkeypatch.delenv("PYPHASE_ORDER")
    assert [k for k in kernels.ORDER_KEYS if kernels.reversed_order(k)] == sorted(kernels.REVERSED,
                                                                                  key=kernels.ORDER_KEYS.index)


def test_reversed_kernels_compile_for_sm90() -> None:
    """The REV forms of the persistent QKV GEMM (its tile index from the end) and of a grid kernel
    (`kernels.pid`) go through ptxas for sm_90 on any machine."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from pyphase import layernorm, linear

    target = GPUTarget("cuda", 90, 32)
    lin = {"H": "*bf16", "W": "*bf16", "B": "*bf16", "Y": "*bf16", "N": "i32", "KK": "i32", "NPROG": "i32",
           "D": "constexpr", "F": "constexpr", "BD": "constexpr", "BM": "constexpr", "BN": "constexpr",
           "STAGES": "constexpr", "EVEN": "constexpr", "REV": "constexpr"}
    ln = {"ALIVE": "*i1", "DXN": "*bf16", "DH": "*bf16", "XN": "*fp32", "MEAN": "*fp32", "RSTD": "*fp32",
          "W": "*fp32", "DX": "*bf16", "DR": "*bf16", "PART": "*fp32", "N": "i32", "stride_w": "i32",
          "D": "constexpr", "BD": "constexpr", "ROWS": "constexpr", "ITERS": "constexpr", "HAS_R": "constexpr",
          "HAS_DXN": "constexpr", "STORE_DR": "constexpr", "EVEN": "constexpr", "RN": "constexpr", "REV": "constexpr"}
    for rev in (False, True):
        srcs = [ASTSource(linear._linear_bias_kernel, lin, {"D": 128, "F": 384, "BD": 128, "BM": 128, "BN": 128,
                                                             "STAGES": 2, "EVEN": True, "REV": rev}),
                ASTSource(layernorm._add_ln_bwd_kernel, ln, {"D": 128, "BD": 128, "ROWS": 16, "ITERS": 4, "HAS_R": True,
                                                              "HAS_DXN": True, "STORE_DR": True, "EVEN": True,
                                                              "RN": True, "REV": rev})]
        asm = [triton.compile(src, target=target, options={"num_warps": 4, **kernels.LAUNCH_OPTIONS}).asm
               for src in srcs]
        assert all(a["cubin"] for a in asm)
        assert ("nctaid.y" in asm[1]["ptx"]) == rev  # the reversed model index counts from the grid's size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path (bf16 Triton kernels, CUDA graph) needs CUDA")
def test_cuda_training_with_reversed_kernels_equals_the_default_bit_for_bit(corpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase.config import ModelShape, RunConfig
    from pyphase.train import train_pack

    shape = ModelShape(d_model=64, n_layer=2, n_head=2, block_size=64)
    base = RunConfig(experiment="t", batch_size=16, lr=3e-3, gradient_clip=1.0, seed=0, steps=30, eval_interval=10,
                     eval_windows=4, model=shape)
    cs = [replace(base, lr=lr, seed=i) for i, lr in enumerate((3e-3, 1e-2))]
    runs = []
    for order in ("none", ",".join(kernels.ORDER_KEYS)):
        monkeypatch.setenv("PYPHASE_ORDER", order)
        runs.append(train_pack(cs, corpus, device="cuda", progress=False))
    for a, b in zip(*runs, strict=True):
        for col in ("train_loss", "grad_norm_before", "grad_norm_after", "val_loss", "weight_norm"):
            np.testing.assert_array_equal(a.steps[col].to_numpy(), b.steps[col].to_numpy(), err_msg=col)
