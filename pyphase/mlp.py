"""The transformer MLP's GELU fused into its GEMMs, in Triton (CUDA).

`gelu_mlp(h, w1, b1, w2)` is `gelu(h @ w1 + b1) @ w2` for K packed models (the fc2 bias is left to
the caller, where the compiler fuses it with the residual add). The stock path writes the 4d-wide
hidden layer to memory four times more than it must: the fc1 product, then bias + GELU reading it
and writing the activation; in the backward pass the gradient w.r.t. the activation, then GELU's
backward reading it and the pre-activation and writing the pre-activation's gradient, then a
separate reduction reading that again for the bias gradient. On the H100 at K = 5, B = 256 those
elementwise passes took 0.27 + 0.37 + 0.11 ms per layer (results/bench/profile_k5_b256_flash_*.txt).

Here fc1's GEMM applies bias and GELU in its epilogue and writes the pre-activation (for the
backward pass) and the activation; the backward GEMM `dy @ w2^T` applies GELU's derivative in its
epilogue, writes the pre-activation's gradient and per-tile column sums for the bias gradient.
The weight gradients and fc2 stay cuBLAS products.

OFF by default (opt in with PYPHASE_MLP=triton): measured on the H100 (K = 5, B = 256, torch 2.11,
Triton 3.6, commit cce6e46, `benches/profile_step.py --variants default,torch_mlp`), these kernels
take 617 us (forward) and 833 us (backward) per layer against ~370 and ~585 us for the stock
GEMM + elementwise kernels they replace, so the whole step is slower (20.76 vs 19.11 ms). They
move less data than the stock path but run far from memory bandwidth; tuning the tiles (or
Hopper-specific GEMMs) is open work.

Numerics follow the stock path under bf16 autocast: every GEMM output is rounded to the input
dtype, the bias is added to the rounded product and rounded again, GELU (exact, erf) and its
derivative are computed in fp32 from the rounded pre-activation. `gelu_mlp_reference` is the stock
computation the tests compare against; on the CPU the kernels run in Triton's interpreter (fp32).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

# (rows, hidden columns, inner step, warps, stages) of the two fused GEMMs.
CONFIG: dict[str, tuple[int, ...]] = {"fwd": (128, 128, 64, 8, 3), "bwd": (128, 128, 64, 8, 3)}


def supported(h: Tensor, w1: Tensor) -> bool:
    """Whether to use the Triton kernels for these inputs (else `gelu_mlp_reference`): only when
    PYPHASE_MLP=triton is set (they are slower so far, see the module's docstring)."""
    if triton is None or os.environ.get("PYPHASE_MLP", "").lower() != "triton":
        return False
    d, f = w1.shape[-2:]
    return h.is_cuda and d % 16 == 0 and f % 16 == 0 and h.dtype in (torch.bfloat16, torch.float16, torch.float32)


def gelu_mlp_reference(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """The stock computation: h (K, N, d), w1 (K, d, f), b1 (K, f), w2 (K, f, d) → (K, N, d)."""
    a = torch.bmm(h, w1)
    return torch.bmm(F.gelu(a + b1[:, None].to(a.dtype)), w2)


if triton is not None:

    @triton.jit
    def _fc_gelu_fwd_kernel(H, W1, B1, PRE, G, N, D: tl.constexpr, FF: tl.constexpr, BM: tl.constexpr,
                            BN: tl.constexpr, BK: tl.constexpr):
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_k = tl.arange(0, BK)
        m_ok = offs_m < N
        dt = PRE.dtype.element_ty
        acc = tl.zeros([BM, BN], tl.float32)
        for kk in range(0, D, BK):
            a = tl.load(H + k * N * D + offs_m[:, None] * D + (kk + offs_k)[None, :], mask=m_ok[:, None], other=0.0)
            b = tl.load(W1 + k * D * FF + (kk + offs_k)[:, None] * FF + offs_n[None, :])
            acc += tl.dot(a, b)
        bias = tl.load(B1 + k * FF + offs_n).to(tl.float32)
        pre = (acc.to(dt).to(tl.float32) + bias[None, :]).to(dt)
        x = pre.to(tl.float32)
        g = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
        out = k * N * FF + offs_m[:, None] * FF + offs_n[None, :]
        tl.store(PRE + out, pre, mask=m_ok[:, None])
        tl.store(G + out, g.to(dt), mask=m_ok[:, None])

    @triton.jit
    def _fc_gelu_bwd_kernel(DY, W2, PRE, DPRE, DB1P, N, D: tl.constexpr, FF: tl.constexpr, BM: tl.constexpr,
                            BN: tl.constexpr, BK: tl.constexpr):
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_k = tl.arange(0, BK)
        m_ok = offs_m < N
        dt = DPRE.dtype.element_ty
        acc = tl.zeros([BM, BN], tl.float32)
        for kk in range(0, D, BK):
            a = tl.load(DY + k * N * D + offs_m[:, None] * D + (kk + offs_k)[None, :], mask=m_ok[:, None], other=0.0)
            b = tl.load(W2 + k * FF * D + offs_n[None, :] * D + (kk + offs_k)[:, None])  # w2^T tile (BK, BN)
            acc += tl.dot(a, b)
        out = k * N * FF + offs_m[:, None] * FF + offs_n[None, :]
        x = tl.load(PRE + out, mask=m_ok[:, None], other=0.0).to(tl.float32)
        cdf = 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))
        pdf = tl.exp(-0.5 * x * x) * 0.3989422804014327
        dpre = (acc.to(dt).to(tl.float32) * (cdf + x * pdf)).to(dt)
        tl.store(DPRE + out, dpre, mask=m_ok[:, None])
        # This tile's share of the bias gradient (rows outside N are zeros): summed over tiles later,
        # in a fixed order, so the result does not depend on scheduling.
        part = tl.sum(tl.where(m_ok[:, None], dpre.to(tl.float32), 0.0), 0)
        tl.store(DB1P + (k * tl.num_programs(1) + pid_m) * FF + offs_n, part)


def _check(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[int, int, int, int]:
    kk, n, d = h.shape
    f = w1.shape[-1]
    if w1.shape != (kk, d, f) or b1.shape != (kk, f) or w2.shape != (kk, f, d):
        raise ValueError(f"MLP shapes do not match: h {tuple(h.shape)}, w1 {tuple(w1.shape)}, "
                         f"b1 {tuple(b1.shape)}, w2 {tuple(w2.shape)}")
    return kk, n, d, f


def _grid(kind: str, n: int, d: int, f: int, kk: int) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """Grid and launch parameters; column and inner blocks shrink to powers of two dividing f and d
    (both multiples of 16, see `supported`)."""
    bm, bn, bk, warps, stages = CONFIG[kind]
    while f % bn:
        bn //= 2
    while d % bk:
        bk //= 2
    return (f // bn, triton.cdiv(n, bm), kk), (bm, bn, bk, warps, stages)


@torch.library.custom_op("pyphase::gelu_mlp_fwd", mutates_args=())
def _mlp_fwd(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """→ output (K, N, d), pre-activation and activation (K, N, f)."""
    h, w1, b1, w2 = (z.contiguous() for z in (h, w1, b1, w2))
    kk, n, d, f = _check(h, w1, b1, w2)
    pre = h.new_empty(kk, n, f)
    g = h.new_empty(kk, n, f)
    grid, (bm, bn, bk, warps, stages) = _grid("fwd", n, d, f, kk)
    _fc_gelu_fwd_kernel[grid](h, w1, b1, pre, g, n, d, f, bm, bn, bk, num_warps=warps, num_stages=stages)
    return torch.bmm(g, w2), pre, g


@_mlp_fwd.register_fake
def _(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    kk, n, d, f = _check(h, w1, b1, w2)
    return h.new_empty(kk, n, d), h.new_empty(kk, n, f), h.new_empty(kk, n, f)


@torch.library.custom_op("pyphase::gelu_mlp_bwd", mutates_args=())
def _mlp_bwd(dy: Tensor, h: Tensor, w1: Tensor, w2: Tensor, pre: Tensor,
             g: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """→ gradients w.r.t. h, w1, b1 (fp32), w2."""
    dy, h, w1, w2, pre, g = (z.contiguous() for z in (dy, h, w1, w2, pre, g))
    kk, n, d = h.shape
    f = w1.shape[-1]
    grid, (bm, bn, bk, warps, stages) = _grid("bwd", n, d, f, kk)
    dpre = torch.empty_like(pre)
    parts = torch.empty(kk, grid[1], f, device=h.device, dtype=torch.float32)
    _fc_gelu_bwd_kernel[grid](dy, w2, pre, dpre, parts, n, d, f, bm, bn, bk, num_warps=warps,
                              num_stages=stages)
    dh = torch.bmm(dpre, w1.transpose(1, 2))
    dw1 = torch.bmm(h.transpose(1, 2), dpre)
    dw2 = torch.bmm(g.transpose(1, 2), dy)
    return dh, dw1, parts.sum(dim=1), dw2


@_mlp_bwd.register_fake
def _(dy: Tensor, h: Tensor, w1: Tensor, w2: Tensor, pre: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (torch.empty_like(h), torch.empty_like(w1), w1.new_empty(w1.shape[0], w1.shape[2], dtype=torch.float32),
            torch.empty_like(w2))


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    h, w1, b1, w2 = inputs
    _, pre, g = output
    ctx.save_for_backward(h, w1, w2, pre, g)
    ctx.b1_dtype = b1.dtype


def _backward(ctx, dy: Tensor, _dpre: Tensor, _dg: Tensor):  # type: ignore[no-untyped-def]
    h, w1, w2, pre, g = ctx.saved_tensors
    dh, dw1, db1, dw2 = _mlp_bwd(dy, h, w1, w2, pre, g)
    return dh, dw1, db1.to(ctx.b1_dtype), dw2


_mlp_fwd.register_autograd(_backward, setup_context=_setup)


def gelu_mlp(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, use_triton: bool | None = None) -> Tensor:
    """gelu(h @ w1 + b1) @ w2 for K models: h (K, N, d), w1 (K, d, f), b1 (K, f), w2 (K, f, d).
    Under autocast the operands are cast to its dtype, as torch.bmm would. Triton kernels where
    `supported` (opt-in) or when `use_triton` forces them, else the stock path."""
    if torch.is_autocast_enabled(h.device.type):
        dt = torch.get_autocast_dtype(h.device.type)
        h, w1, b1, w2 = h.to(dt), w1.to(dt), b1.to(dt), w2.to(dt)
    if use_triton if use_triton is not None else supported(h, w1):
        return _mlp_fwd(h, w1, b1.to(h.dtype), w2)[0]
    return gelu_mlp_reference(h, w1, b1, w2)
