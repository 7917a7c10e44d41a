"""Output head + cross-entropy for K packed models as one Triton op (CUDA).

The stock path writes the (K, B·T, V) logits, converts them to fp32 (another copy), and runs
log-softmax, the loss, its backward and the head's two gradient GEMMs as separate kernels; with
V = 65 the GEMMs are misaligned (cuBLAS falls back to `align1` kernels). Measured on the H100 at
K = 5, B = 256 (results/bench/profile_k5_b256_addln_908a9d4.txt) that is about 0.5 ms of an 18 ms
step under torch.compile, and more without it. Here:

- forward, one program per tile of rows: the logits of the tile on chip (fp32 accumulation of
  h @ W, W rounded to h's dtype as autocast would), log-sum-exp, the loss of each row; writes the
  per-row loss and log-sum-exp (8 bytes a row).
- backward, one program per span of rows: recomputes the logits, softmax minus the one-hot target
  times the incoming per-row gradient, writes the input's gradient, and accumulates the head
  weight's gradient over its rows as a per-program partial sum (summed in a fixed order after).

`head_ce(h, w, targets)` → per-row losses (K, N) fp32. On the CPU, or with PYPHASE_HEAD=torch,
everything is the stock computation `head_ce_reference`; on the CPU the kernels run in Triton's
interpreter in the tests (fp32). V is padded to a power of two on chip: up to MAX_VOCAB.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from pyphase.kernels import (alive_mask, autocast_operands, backward_op, call, launch, pad_width, register_autograd,
                             sum_parts)

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

MAX_VOCAB = 256
# fwd: (rows per program, warps); bwd: (rows per tile, tiles per program, warps). Chosen by
# `benches/bench_head.py` on the H100 (K = 5, N = 65,536, d = 128, V = 65, commit ed57c9b,
# results/bench/bench_head_ed57c9b.txt): 0.70 ms forward + backward (first guess (64, 4)/(64, 8, 8):
# 0.97 ms; stock under torch.compile 0.68 ms, uncompiled 2.19 ms). Backward (64, 8, 8) since the
# weight tile is loaded once per program (caa8751, results/bench/bench_head_sweep_caa8751.txt:
# 0.44 ms against 0.65 ms for (64, 4, 8); compiled stock 0.81 ms).
CONFIG: dict[str, tuple[int, ...]] = {"fwd": (128, 8), "bwd": (64, 8, 8)}


def supported(h: Tensor, w: Tensor) -> bool:
    """Whether to use the Triton kernels: CUDA, V <= MAX_VOCAB, unless PYPHASE_HEAD=torch."""
    if triton is None or os.environ.get("PYPHASE_HEAD", "").lower() == "torch":
        return False
    return h.is_cuda and w.shape[-1] <= MAX_VOCAB


def head_ce_reference(h: Tensor, w: Tensor, targets: Tensor) -> Tensor:
    """The stock computation: h (K, N, d), w (K, d, V), targets (K, N) → per-row cross-entropy (K, N) fp32."""
    kk, n, _ = h.shape
    logits = torch.bmm(h, w)
    v = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, v), targets.reshape(-1), reduction="none").view(kk, n)


if triton is not None:

    @triton.jit
    def _head_weight(W, k, V, D: tl.constexpr, BD: tl.constexpr, VP: tl.constexpr, dt: tl.constexpr):
        """Model k's (BD, VP) head weight tile, zero-padded, cast to the input's dtype dt."""
        cols = tl.arange(0, BD)
        vs = tl.arange(0, VP)
        w = tl.load(W + k * D * V + cols[:, None] * V + vs[None, :], mask=(cols < D)[:, None] & (vs < V)[None, :],
                    other=0.0)
        return w.to(dt)

    @triton.jit
    def _logits(H, w, T, k, row0, N, V, D: tl.constexpr, BD: tl.constexpr, VP: tl.constexpr, ROWS: tl.constexpr):
        """Rows [row0, row0+ROWS) of model k: input tile, fp32 logits with padded columns at -inf,
        targets, row mask, column mask (w from `_head_weight`)."""
        rows = tl.arange(0, ROWS)
        cols = tl.arange(0, BD)
        vs = tl.arange(0, VP)
        r_ok = (row0 + rows) < N
        c_ok = cols < D
        v_ok = vs < V
        h = tl.load(H + (k * N + row0 + rows)[:, None] * D + cols[None, :], mask=r_ok[:, None] & c_ok[None, :],
                    other=0.0)
        logits = tl.dot(h, w)
        logits = tl.where(v_ok[None, :], logits, float("-inf"))
        tgt = tl.load(T + k * N + row0 + rows, mask=r_ok, other=0)
        return h, logits, tgt, r_ok, v_ok

    @triton.jit
    def _head_fwd_kernel(ALIVE, H, W, T, LOSS, LSE, N, V, D: tl.constexpr, BD: tl.constexpr, VP: tl.constexpr,
                         ROWS: tl.constexpr):
        pid = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = pid.to(tl.int64) * ROWS
        w = _head_weight(W, k, V, D, BD, VP, H.dtype.element_ty)
        _, logits, tgt, r_ok, _ = _logits(H, w, T, k, row0, N, V, D, BD, VP, ROWS)
        mx = tl.max(logits, 1)
        lse = mx + tl.log(tl.sum(tl.exp(logits - mx[:, None]), 1))
        vs = tl.arange(0, VP)
        lt = tl.sum(tl.where(vs[None, :] == tgt[:, None], logits, 0.0), 1)
        rows = tl.arange(0, ROWS)
        tl.store(LOSS + k * N + row0 + rows, lse - lt, mask=r_ok)
        tl.store(LSE + k * N + row0 + rows, lse, mask=r_ok)

    @triton.jit
    def _head_bwd_kernel(ALIVE, H, W, T, LSE, DL, DH, PART, N, V, D: tl.constexpr, BD: tl.constexpr, VP: tl.constexpr,
                         ROWS: tl.constexpr, ITERS: tl.constexpr):
        pid = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        rows = tl.arange(0, ROWS)
        cols = tl.arange(0, BD)
        c_ok = cols < D
        vs = tl.arange(0, VP)
        acc = tl.zeros([BD, VP], tl.float32)
        w = _head_weight(W, k, V, D, BD, VP, H.dtype.element_ty)  # loaded once, not per tile
        for it in range(ITERS):
            row0 = (pid * ITERS + it).to(tl.int64) * ROWS
            h, logits, tgt, r_ok, v_ok = _logits(H, w, T, k, row0, N, V, D, BD, VP, ROWS)
            lse = tl.load(LSE + k * N + row0 + rows, mask=r_ok, other=0.0)
            dl = tl.load(DL + k * N + row0 + rows, mask=r_ok, other=0.0)
            p = tl.exp(logits - lse[:, None])
            dlog = (p - tl.where(vs[None, :] == tgt[:, None], 1.0, 0.0)) * dl[:, None]
            dlog = tl.where(r_ok[:, None] & v_ok[None, :], dlog, 0.0).to(h.dtype)
            dh = tl.dot(dlog, tl.trans(w))
            tl.store(DH + (k * N + row0 + rows)[:, None] * D + cols[None, :], dh.to(DH.dtype.element_ty),
                     mask=r_ok[:, None] & c_ok[None, :])
            acc += tl.dot(tl.trans(h), dlog)
        part = PART + (k * tl.num_programs(0) + pid) * BD * VP
        tl.store(part + cols[:, None] * VP + vs[None, :], acc)


def _check(h: Tensor, w: Tensor, targets: Tensor) -> tuple[int, int, int, int]:
    kk, n, d = h.shape
    if w.dim() != 3 or w.shape[:2] != (kk, d) or targets.shape != (kk, n):
        raise ValueError(f"head_ce shapes do not match: h {tuple(h.shape)}, w {tuple(w.shape)}, "
                         f"targets {tuple(targets.shape)}")
    return kk, n, d, w.shape[2]


@torch.library.custom_op("pyphase::head_ce_fwd", mutates_args=())
def _head_ce_fwd(h: Tensor, w: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """→ per-row loss and log-sum-exp, (K, N) fp32 each."""
    h, w, targets = h.contiguous(), w.contiguous(), targets.contiguous()
    kk, n, d, v = _check(h, w, targets)
    loss = torch.empty(kk, n, device=h.device, dtype=torch.float32)
    lse = torch.empty_like(loss)
    rows, warps = CONFIG["fwd"]
    launch(_head_fwd_kernel, (triton.cdiv(n, rows), kk))(alive_mask(kk, h.device), h, w, targets, loss, lse, n, v, D=d, BD=pad_width(d),
                                                          VP=pad_width(v), ROWS=rows, num_warps=warps)
    return loss, lse


@_head_ce_fwd.register_fake
def _(h: Tensor, w: Tensor, targets: Tensor):  # type: ignore[no-untyped-def]
    kk, n, _, _ = _check(h, w, targets)
    return h.new_empty(kk, n, dtype=torch.float32), h.new_empty(kk, n, dtype=torch.float32)


@torch.library.custom_op("pyphase::head_ce_bwd", mutates_args=())
def _head_ce_bwd(dl: Tensor, h: Tensor, w: Tensor, targets: Tensor, lse: Tensor) -> tuple[Tensor, Tensor]:
    """→ gradient of the input (h's dtype) and of the head weight (K, d, V) fp32."""
    h, w, targets, dl = h.contiguous(), w.contiguous(), targets.contiguous(), dl.contiguous()
    kk, n, d, v = _check(h, w, targets)
    vp = pad_width(v)
    rows, iters, warps = CONFIG["bwd"]
    iters = max(1, min(iters, triton.cdiv(n, rows)))
    progs = triton.cdiv(n, rows * iters)
    dh = torch.empty_like(h)
    part = torch.empty(kk, progs, pad_width(d), vp, device=h.device, dtype=torch.float32)
    launch(_head_bwd_kernel, (progs, kk))(alive_mask(kk, h.device), h, w, targets, lse, dl, dh, part, n, v, D=d, BD=pad_width(d), VP=vp,
                                          ROWS=rows, ITERS=iters, num_warps=warps)
    return dh, sum_parts(part.view(kk, progs, -1)).view(kk, -1, vp)[:, :d, :v].contiguous()


@_head_ce_bwd.register_fake
def _(dl: Tensor, h: Tensor, w: Tensor, targets: Tensor, lse: Tensor):  # type: ignore[no-untyped-def]
    kk, n, d, v = _check(h, w, targets)
    return torch.empty_like(h), h.new_empty(kk, d, v, dtype=torch.float32)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    h, w, targets = inputs
    ctx.save_for_backward(h, w, targets, output[1])
    ctx.w_dtype = w.dtype


def _backward(ctx, dl: Tensor, _dlse: Tensor):  # type: ignore[no-untyped-def]
    h, w, targets, lse = ctx.saved_tensors
    if dl is None:  # the losses were not used
        return None, None, None
    dh, dw = backward_op(ctx, _head_ce_bwd)(dl, h, w, targets, lse)
    return dh, dw.to(ctx.w_dtype), None


register_autograd(_head_ce_fwd, _backward, _setup)


def head_ce(h: Tensor, w: Tensor, targets: Tensor, use_triton: bool | None = None) -> Tensor:
    """Per-row cross-entropy (K, N) fp32 of logits h @ w against targets (see `head_ce_reference`).
    Under autocast the weight is rounded to the autocast dtype, as the stock bmm does."""
    if not (use_triton if use_triton is not None else supported(h, w)):
        return head_ce_reference(h, w, targets)
    if w.shape[-1] > MAX_VOCAB:
        raise ValueError(f"head_ce kernels need V <= {MAX_VOCAB}, got V {w.shape[-1]}")
    (h,) = autocast_operands(h.device.type, h)
    return call(_head_ce_fwd, h, w, targets)[0]


@torch.library.custom_op("pyphase::mean_rows", mutates_args=())
def _mean_rows(x: Tensor) -> Tensor:
    """(K, N) fp32 → each row's mean (K,), summed in `sum_parts`'s fixed order: the row as (N / C, C)
    summed over its N / C rows for each of C columns, then those C sums (two short launches; one
    program per model over all N was ~0.1 ms of a K = 5, B = 256 step on the H200)."""
    kk, n = x.shape
    c = math.gcd(n, 256)
    cols = sum_parts(x.contiguous().view(kk, n // c, c))
    return sum_parts(cols.view(kk, c, 1))[:, 0] / n


@_mean_rows.register_fake
def _(x: Tensor) -> Tensor:
    return x.new_empty(x.shape[0])


def _setup_mean(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    ctx.n = inputs[0].shape[1]


def _backward_mean(ctx, g: Tensor | None):  # type: ignore[no-untyped-def]
    # torch's mean backward: the gradient expanded over the row, divided by its length
    return None if g is None else (g / ctx.n)[:, None].expand(-1, ctx.n)


register_autograd(_mean_rows, _backward_mean, _setup_mean)


def mean_loss(rows: Tensor) -> Tensor:
    """Per-model mean (K,) of per-row losses (K, N) fp32. On CUDA in a fixed order that does not depend
    on K: torch's `mean(dim=1)` picks its reduction's split from the number of rows it reduces to, so
    a model's loss came out an ulp apart alone and in a pack of 5 (results/bench/README.md, session 43;
    the gradients never depended on it: its backward is 1/N for every row, as here). Elsewhere `mean`."""
    if not rows.is_cuda or triton is None:
        return rows.mean(dim=1)
    return call(_mean_rows, rows)
