"""The clipped optimizer update of K packed models, as two Triton kernels on CUDA.

PackTrainer holds each model's parameters, gradient and optimizer moments as rows of (K, P) fp32
tensors. Its step needs each model's gradient norm (telemetry, divergence check, clip factor), then
AdamW's (or SGD-with-momentum's) update with that model's clip factor, learning rate, weight decay
and divergence mask. Written as torch ops that is about fifteen elementwise kernels and a reduction,
each reading and writing whole (K, P) rows. Here:

- `sumsq_parts(g)`: one kernel, each program's share of every row's sum of squares, (K, blocks);
  `grad_norm(g)` adds those up with `kernels.sum_parts` (a fixed order: deterministic, unlike atomics);
- `adamw_(...)` / `sgd_(...)`: one kernel each that reads the gradient, parameters and moments once
  and writes parameters and moments once.

Semantics are those of the torch ops `adamw_reference_` / `sgd_reference_` (the reference, and
the CPU path): the gradient of a model that is no longer alive counts as zero (even if it is NaN)
and its moments keep decaying; PackTrainer also gives it a zero learning rate, so its parameters stay. Rounding differs from the torch ops only in
the order of operations (fused multiply-adds, the norm's summation order, `exp2` for the bias
corrections' powers); tests compare both (Triton's interpreter on the CPU, compiled on CUDA).
PYPHASE_OPTIM=torch in the environment turns the kernels off.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from pyphase.kernels import launch, sum_parts

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

BLOCK = 4096  # elements of one row per program


def supported(p: Tensor) -> bool:
    """Whether to use the kernels: CUDA fp32 rows, unless PYPHASE_OPTIM=torch."""
    if triton is None or os.environ.get("PYPHASE_OPTIM", "").lower() == "torch":
        return False
    return p.is_cuda and p.dtype == torch.float32


if triton is not None:

    @triton.jit
    def _sumsq_kernel(G, PART, P, NB, BLOCK: tl.constexpr):
        blk = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        offs = blk * BLOCK + tl.arange(0, BLOCK)
        g = tl.load(G + k * P + offs, mask=offs < P, other=0.0)
        tl.store(PART + k * NB + blk, tl.sum(g * g, 0))

    @triton.jit
    def _block_of_model(ALIVE, COEF, LR, WD, P, BLOCK: tl.constexpr):
        # This program's elements of its model's row (offsets, in-bounds mask) and the model's scalars.
        k = tl.program_id(1).to(tl.int64)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        return k * P + offs, offs < P, tl.load(ALIVE + k) != 0, tl.load(COEF + k), tl.load(LR + k), tl.load(WD + k)

    @triton.jit
    def _adamw_kernel(PP, G, M, V, ALIVE, COEF, LR, WD, T, P, b1, b2, log2_b1, log2_b2, eps,
                      BLOCK: tl.constexpr):
        at, ok, alive, coef, lr, wd = _block_of_model(ALIVE, COEF, LR, WD, P, BLOCK)
        step = (tl.load(T) + 1).to(tl.float32)
        g = tl.load(G + at, mask=ok, other=0.0)
        g = tl.where(alive, g * coef, 0.0)
        p = tl.load(PP + at, mask=ok, other=0.0)
        m = tl.load(M + at, mask=ok, other=0.0)
        v = tl.load(V + at, mask=ok, other=0.0)
        p = p * (1.0 - lr * wd)
        m = m + (1.0 - b1) * (g - m)
        v = v * b2 + (1.0 - b2) * g * g
        bc1 = 1.0 - tl.exp2(step * log2_b1)
        bc2_sqrt = tl.sqrt(1.0 - tl.exp2(step * log2_b2))
        denom = tl.sqrt(v) / bc2_sqrt + eps
        p = p - m / denom * (lr / bc1)
        tl.store(PP + at, p, mask=ok)
        tl.store(M + at, m, mask=ok)
        tl.store(V + at, v, mask=ok)

    @triton.jit
    def _sgd_kernel(PP, G, M, ALIVE, COEF, LR, WD, P, momentum, BLOCK: tl.constexpr):
        at, ok, alive, coef, lr, wd = _block_of_model(ALIVE, COEF, LR, WD, P, BLOCK)
        g = tl.load(G + at, mask=ok, other=0.0)
        p = tl.load(PP + at, mask=ok, other=0.0)
        m = tl.load(M + at, mask=ok, other=0.0)
        g = tl.where(alive, g * coef + wd * p, 0.0)
        m = m * momentum + g
        tl.store(PP + at, p - lr * m, mask=ok)
        tl.store(M + at, m, mask=ok)


def _rows(*ts: Tensor) -> tuple[int, int]:
    kk, p = ts[0].shape
    for z in ts:
        if z.shape != (kk, p) or not z.is_contiguous() or z.dtype != torch.float32:
            raise ValueError(f"optim: expected contiguous fp32 ({kk}, {p}) rows, got {tuple(z.shape)} {z.dtype}")
    return kk, p


def _per_model(kk: int, **ts: Tensor) -> None:
    for name, z in ts.items():
        if z.shape != (kk,) or not z.is_contiguous():
            raise ValueError(f"optim: {name} must be a contiguous ({kk},) tensor, got {tuple(z.shape)}")


def sumsq_parts(g: Tensor) -> Tensor:
    """(K, P) fp32 → (K, ceil(P / BLOCK)) partial sums of squares of each row (kernel)."""
    kk, p = _rows(g)
    nb = triton.cdiv(p, BLOCK)
    part = torch.empty(kk, nb, device=g.device, dtype=torch.float32)
    launch(_sumsq_kernel, (nb, kk))(g, part, p, nb, BLOCK=BLOCK, num_warps=8)
    return part


def grad_norm(g: Tensor, use_triton: bool | None = None) -> Tensor:
    """L2 norm of each row of g (K, P) fp32 → (K,): on CUDA the kernel's partial sums, summed in a
    fixed order (deterministic)."""
    if use_triton if use_triton is not None else supported(g):
        return sum_parts(sumsq_parts(g)[..., None])[:, 0].sqrt()
    return g.square().sum(dim=1).sqrt()


def adamw_reference_(p: Tensor, g: Tensor, m: Tensor, v: Tensor, alive: Tensor, coef: Tensor, lr: Tensor,
                     wd: Tensor, t: Tensor, betas: tuple[float, float], eps: float) -> None:
    """`adamw_` as torch ops: torch.optim.AdamW's update (decoupled weight decay, bias correction)."""
    g = torch.where(alive[:, None], g * coef[:, None], 0.0)
    b1, b2 = betas
    step = (t + 1).float()
    p.mul_(1 - (lr * wd)[:, None])
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    bc1 = 1 - torch.pow(b1, step)
    bc2_sqrt = torch.sqrt(1 - torch.pow(b2, step))
    denom = (v.sqrt() / bc2_sqrt).add_(eps)
    p.sub_(m / denom * (lr / bc1)[:, None])


def sgd_reference_(p: Tensor, g: Tensor, m: Tensor, alive: Tensor, coef: Tensor, lr: Tensor, wd: Tensor,
                   momentum: float) -> None:
    """`sgd_` as torch ops: torch.optim.SGD with momentum (dampening 0, no Nesterov)."""
    g = torch.where(alive[:, None], g * coef[:, None], 0.0)
    g = g + wd[:, None] * p * alive[:, None]
    m.mul_(momentum).add_(g)
    p.sub_(lr[:, None] * m)


def adamw_(p: Tensor, g: Tensor, m: Tensor, v: Tensor, alive: Tensor, coef: Tensor, lr: Tensor, wd: Tensor,
           t: Tensor, betas: tuple[float, float], eps: float, use_triton: bool | None = None) -> None:
    """In place, for each model k (rows of the (K, P) fp32 p, g, m, v): the gradient coef_k · g_k,
    or zero unless alive_k; then torch.optim.AdamW's update of p_k, m_k, v_k at step t + 1 (t: the
    0-d int64 step counter before this step), learning rate lr_k, decoupled weight decay wd_k."""
    if not (use_triton if use_triton is not None else supported(p)):
        return adamw_reference_(p, g, m, v, alive, coef, lr, wd, t, betas, eps)
    kk, n = _rows(p, g, m, v)
    _per_model(kk, alive=alive, coef=coef, lr=lr, wd=wd)
    b1, b2 = betas
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"optim: AdamW betas must lie in [0, 1), got {betas}")
    log2_b1, log2_b2 = (math.log2(b) if b > 0 else -math.inf for b in betas)  # b ** step = exp2(step · log2 b)
    launch(_adamw_kernel, (triton.cdiv(n, BLOCK), kk))(
        p, g, m, v, alive, coef, lr, wd, t, n, b1, b2, log2_b1, log2_b2, eps, BLOCK=BLOCK, num_warps=8)


def sgd_(p: Tensor, g: Tensor, m: Tensor, alive: Tensor, coef: Tensor, lr: Tensor, wd: Tensor, momentum: float,
         use_triton: bool | None = None) -> None:
    """In place, for each model k: torch.optim.SGD's update with momentum (dampening 0, coupled
    weight decay wd_k) of p_k, m_k from the gradient coef_k · g_k, everything zero unless alive_k."""
    if not (use_triton if use_triton is not None else supported(p)):
        return sgd_reference_(p, g, m, alive, coef, lr, wd, momentum)
    kk, n = _rows(p, g, m)
    _per_model(kk, alive=alive, coef=coef, lr=lr, wd=wd)
    launch(_sgd_kernel, (triton.cdiv(n, BLOCK), kk))(p, g, m, alive, coef, lr, wd, n, momentum, BLOCK=BLOCK,
                                                    num_warps=8)
