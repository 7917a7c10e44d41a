"""Residual add + LayerNorm as one op for K packed models, in Triton (CUDA).

Every LayerNorm of the packed transformer but the first reads the residual stream right after a
branch's output was added to it: `x = x + (r + rb)`, `h = LN(x) * w + b`, where r is the attention
projection's or the MLP's product (in the compute dtype) and rb its bias. torch.compile fuses the
add with the normalisation, but computes the four parameter gradients (LayerNorm weight and bias,
the branch's bias) as separate column sums, each reading (K, B·T, d) tensors again. Measured on
the H100 at K = 5, B = 256 (results/bench/profile_k5_b256_tritonmlp_57fb4a4.txt) those sums took
about 1.2 ms of an 18.5 ms step.

Here the forward pass writes the new residual stream and the normalised output (in the autocast
dtype, rounded once); the backward pass computes the input gradient, adds the residual stream's
incoming gradient, writes it both in fp32 (the residual stream) and in the branch's dtype, and
accumulates the three parameter gradients as per-program partial sums, summed in a fixed order.

Measured on the H100 (K = 5, B = 256, `benches/profile_step.py --variants default,torch_ln`, commit
908a9d4, with the untuned first launch configuration): the packed training step 18.07 ms against
18.80 ms with the stock add + LayerNorm (-3.9%).

`embed_ln(idx, wte, wpe, w, b)` (end of this module) does the same for the first LayerNorm, which
reads the embedding: gather, position add and normalisation in one kernel. Its backward kernel also
sums the token and position tables' gradients (small tables: EMBED_MAX_VOCAB, EMBED_MAX_TILE), so the residual
stream's gradient at the embedding is never written: measured on the H100 at K = 5, B = 256 that
replaced the LayerNorm backward (0.235 ms), the stock embedding backward (sort + atomic adds,
0.21 ms) and the position gradient's sum (0.06 ms) by one 0.19-0.22 ms kernel
(results/bench/ops_eager_k5_b256_*.txt).

In the packed model's forward pass on CUDA, `pyphase.mlp_block` computes both add + LayerNorms
of a block's MLP half inside its MLP kernel (the same expressions, the same bits); their backward
passes are this module's.

`add_ln(x, r, rb, w, b)` with r None is the plain LayerNorm (the first block's), the same kernels
without the add (the residual stream returned is x itself). On the CPU, or with
PYPHASE_LN=torch, everything is the stock computation `add_ln_reference`; on the CPU the kernels run
in Triton's interpreter in the tests (fp32).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from pyphase import kernels
from pyphase.kernels import alive_mask, backward_op, call, call_stream, launch, pad_width, register_autograd, sum_parts

try:
    import triton
    import triton.language as tl

    from pyphase.kernels import below, mul_rn
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

EPS = 1e-5  # F.layer_norm's default
# fwd: (rows per program, warps); bwd: (rows per tile, tiles per program, warps).
# Chosen on the H100 (K = 5, N = 65,536, d = 128): forward by `benches/bench_ln.py` at 908a9d4
# (0.29 ms; stock 0.26 ms); backward, since its parameter-gradient sums are kept per tile row,
# by `bench_ln.py` at f35273d (results/bench/bench_ln_sweep_f35273d.txt: 0.37 ms against 0.49 ms
# for the earlier (64, 4, 8)) and in the K = 5, B = 256 training step at dd928ea
# (variants_k5_b256_dd928ea.txt: 16.14 against 16.27 ms, LayerNorm kernels 3.46 against 3.59 ms).
CONFIG: dict[str, tuple[int, ...]] = {"fwd": (64, 8), "bwd": (16, 16, 4), "embed_bwd": (32, 8, 256)}
# embed_bwd: (positions per program, warps, programs aimed at), from `benches/profile_step.py
# --embed-config` on the H100 (results/bench/embed_sweep_*.txt: embedding kernel 0.185 ms a step
# against 0.19-0.36 ms for the other five tried).
# The fused embedding backward keeps a (vocabulary x d) fp32 tile of the token table's gradient in
# registers: up to 128 x 128 (padded to powers of two); larger tables take the stock embedding
# backward (see `_embed_backward`), as register spills (or a compile out of resources) would cost more.
EMBED_MAX_VOCAB = 128
EMBED_MAX_TILE = 128 * 128


def supported(x: Tensor, r: Tensor | None) -> bool:
    """Whether to use the Triton kernels: CUDA, unless PYPHASE_LN=torch."""
    if triton is None or os.environ.get("PYPHASE_LN", "").lower() == "torch":
        return False
    return x.is_cuda and x.dtype in (torch.float32, torch.bfloat16, torch.float16)


def add_ln_reference(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """The stock computation: x (K, N, d) fp32 residual stream, r (K, N, d) branch output (or None),
    rb (K, d) its bias, w/b (K, d) → (new residual stream, LayerNorm output)."""
    if r is not None:
        assert rb is not None
        x = x + (r + rb[:, None].to(r.dtype))
    return x, F.layer_norm(x, (x.shape[-1],)) * w[:, None] + b[:, None]


if triton is not None:

    @triton.jit
    def _add_ln_fwd_kernel(X, R, RB, W, B, XN, H, MEAN, RSTD, N, eps, stride_rb, stride_w, stride_b,
                           D: tl.constexpr, BD: tl.constexpr, ROWS: tl.constexpr, HAS_R: tl.constexpr):
        pid = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        row0 = pid.to(tl.int64) * ROWS
        rows = tl.arange(0, ROWS)
        cols = tl.arange(0, BD)
        r_ok = (row0 + rows) < N
        c_ok = cols < D
        m = r_ok[:, None] & c_ok[None, :]
        off = (k * N + row0) * D + rows[:, None] * D + cols[None, :]
        x = tl.load(X + off, mask=m, other=0.0).to(tl.float32)
        if HAS_R:
            x = _add_rows(x, R, RB + k * stride_rb, off, m, cols, c_ok)
            tl.store(XN + off, x.to(XN.dtype.element_ty), mask=m)
        _normalise_rows(x, m, c_ok, r_ok, cols, off, k * N + row0 + rows, W + k * stride_w, B + k * stride_b, H,
                        MEAN, RSTD, eps, D)

    @triton.jit
    def _add_rows(x, R, RB, off, m, cols, c_ok):
        """The fp32 rows x plus the branch's rows R at `off` and its bias RB: the bias is added in
        the branch's dtype (rounded), then the sum to the fp32 stream."""
        r = tl.load(R + off, mask=m, other=0.0).to(tl.float32)
        rb = tl.load(RB + cols, mask=c_ok, other=0.0).to(tl.float32)
        return x + (r + rb[None, :]).to(R.dtype.element_ty).to(tl.float32)

    @triton.jit
    def _normalise_rows(x, m, c_ok, r_ok, cols, off, stat, W, B, H, MEAN, RSTD, eps, D: tl.constexpr):
        """LayerNorm of the fp32 rows x (masked by m): output to H at `off` (also returned, as
        stored), row statistics at `stat`."""
        mean = tl.sum(x, 1) / D
        xc = tl.where(m, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 1) / D + eps)
        w = tl.load(W + cols, mask=c_ok, other=0.0)
        b = tl.load(B + cols, mask=c_ok, other=0.0)
        h = (xc * rstd[:, None] * w[None, :] + b[None, :]).to(H.dtype.element_ty)
        tl.store(H + off, h, mask=m)
        tl.store(MEAN + stat, mean, mask=r_ok)
        tl.store(RSTD + stat, rstd, mask=r_ok)
        return h

    @triton.jit
    def _grad_rows(XN, DH, DXN, MEAN, RSTD, stat, off, m, r_ok, w, D: tl.constexpr, HAS_DXN: tl.constexpr,
                   RN: tl.constexpr):
        # One tile of the LayerNorm backward (rows `stat` of the statistics, elements `off`): the
        # input gradient dx, plus the residual stream's incoming gradient if HAS_DXN, and the
        # output gradient and normalised input the parameter gradients are summed from. Without
        # HAS_DXN, dx's last product is rounded on its own (`kernels.mul_rn`, RN on the GPU), so that
        # a caller's sum of unmasked dx does not fuse it into a multiply-add (a masked sum's
        # select keeps it apart anyway).
        mean = tl.load(MEAN + stat, mask=r_ok, other=0.0)
        rstd = tl.load(RSTD + stat, mask=r_ok, other=0.0)
        xhat = tl.where(m, (tl.load(XN + off, mask=m, other=0.0).to(tl.float32) - mean[:, None]) * rstd[:, None], 0.0)
        dh = tl.load(DH + off, mask=m, other=0.0).to(tl.float32)
        g = dh * w[None, :]
        c1 = tl.sum(g * xhat, 1) / D
        c2 = tl.sum(g, 1) / D
        if HAS_DXN:
            dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
            dx += tl.load(DXN + off, mask=m, other=0.0).to(tl.float32)
        else:
            dx = mul_rn(g - xhat * c1[:, None] - c2[:, None], rstd[:, None], RN)
        return dx, dh, xhat

    @triton.jit
    def _add_ln_bwd_kernel(ALIVE, DXN, DH, XN, MEAN, RSTD, W, DX, DR, PART, N, stride_w, D: tl.constexpr,
                           BD: tl.constexpr, ROWS: tl.constexpr, ITERS: tl.constexpr, HAS_R: tl.constexpr,
                           HAS_DXN: tl.constexpr, STORE_DR: tl.constexpr, EVEN: tl.constexpr, RN: tl.constexpr):
        # EVEN: every program's rows inside (N a multiple of ROWS · ITERS) and D = BD, so the masks
        # are constants that fold away (`kernels.unmasked`); RN: `_grad_rows`
        pid = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        rows = tl.arange(0, ROWS)
        cols = tl.arange(0, BD)
        c_ok = below(cols, D, EVEN)
        w = tl.load(W + k * stride_w + cols, mask=c_ok, other=0.0).to(tl.float32)
        # Parameter-gradient partial sums kept per row of the tile and summed over rows once at the
        # end: a column sum per tile would need a cross-warp reduction every iteration.
        acc_dw = tl.zeros([ROWS, BD], tl.float32)
        acc_db = tl.zeros([ROWS, BD], tl.float32)
        acc_drb = tl.zeros([ROWS, BD], tl.float32)
        for it in range(ITERS):
            row0 = (pid * ITERS + it).to(tl.int64) * ROWS
            r_ok = below(row0 + rows, N, EVEN)
            m = r_ok[:, None] & c_ok[None, :]
            off = (k * N + row0) * D + rows[:, None] * D + cols[None, :]
            dx, dh, xhat = _grad_rows(XN, DH, DXN, MEAN, RSTD, k * N + row0 + rows, off, m, r_ok, w, D, HAS_DXN, RN)
            acc_dw += dh * xhat
            acc_db += dh
            if HAS_R:
                if STORE_DR:
                    tl.store(DR + off, dx.to(DR.dtype.element_ty), mask=m)
                acc_drb += tl.where(m, dx, 0.0)
            tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=m)
        part = PART + (k * tl.num_programs(0) + pid) * 3 * D + cols
        tl.store(part, tl.sum(acc_dw, 0), mask=c_ok)
        tl.store(part + D, tl.sum(acc_db, 0), mask=c_ok)
        tl.store(part + 2 * D, tl.sum(acc_drb, 0), mask=c_ok)


def _check(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor) -> tuple[int, int, int]:
    kk, n, d = x.shape
    if ((r is None) != (rb is None) or (r is not None and r.shape != x.shape)
            or (rb is not None and rb.shape != (kk, d)) or w.shape != (kk, d) or b.shape != (kk, d)):
        shapes = ", ".join(f"{k} {None if z is None else tuple(z.shape)}" for k, z in
                           (("x", x), ("r", r), ("rb", rb), ("w", w), ("b", b)))
        raise ValueError(f"add_ln shapes do not match: {shapes}")
    for name, z in (("rb", rb), ("w", w), ("b", b)):
        if z is not None and z.stride(-1) != 1:
            raise ValueError(f"add_ln: {name} must have a contiguous last dimension")
    return kk, n, d


@torch.library.custom_op("pyphase::add_ln_fwd", mutates_args=())
def _add_ln_fwd(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor,
                out_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """→ new residual stream (x's dtype; empty without a branch r: the stream is x), LayerNorm
    output (out_dtype), row means and inverse std."""
    x = x.contiguous()
    kk, n, d = _check(x, r, rb, w, b)
    has_r = r is not None
    xn = torch.empty_like(x) if has_r else x.new_empty(0)
    h = torch.empty(kk, n, d, device=x.device, dtype=out_dtype)
    mean = torch.empty(kk, n, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    _launch_fwd(x, r.contiguous() if r is not None else None, rb, w, b, xn, h, mean, rstd)
    return xn, h, mean, rstd


def _launch_fwd(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor, xn: Tensor, h: Tensor,
                mean: Tensor, rstd: Tensor) -> None:
    """Launch the add + LayerNorm forward kernel into the given outputs (x, r contiguous (K, N, d);
    without a branch r, xn is not written)."""
    kk, n, d = x.shape
    rows, warps = CONFIG["fwd"]
    has_r = r is not None
    r, rb = (r, rb) if has_r else (x, w)
    assert rb is not None
    launch(_add_ln_fwd_kernel, (triton.cdiv(n, rows), kk))(
        x, r, rb, w, b, xn, h, mean, rstd, n, EPS, rb.stride(0), w.stride(0), b.stride(0), D=d,
        BD=pad_width(d), ROWS=rows, HAS_R=has_r, num_warps=warps)


@_add_ln_fwd.register_fake
def _(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor, out_dtype: torch.dtype):  # type: ignore[no-untyped-def]
    kk, n, d = _check(x, r, rb, w, b)
    return (torch.empty_like(x) if r is not None else x.new_empty(0), x.new_empty(kk, n, d, dtype=out_dtype),
            x.new_empty(kk, n, dtype=torch.float32), x.new_empty(kk, n, dtype=torch.float32))


def _writes_branch_grad(has_r: bool, r_dtype: torch.dtype, g_dtype: torch.dtype) -> bool:
    """Whether `_add_ln_bwd` writes the branch's gradient: there is a branch and its dtype is not
    that of the stream's gradient (otherwise the stream's gradient serves, `branch_grads`)."""
    return has_r and r_dtype != g_dtype


@torch.library.custom_op("pyphase::add_ln_bwd", mutates_args=())
def _add_ln_bwd(dxn: Tensor | None, dh: Tensor, xn: Tensor, mean: Tensor, rstd: Tensor, w: Tensor,
                r_dtype: torch.dtype, has_r: bool, g_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """→ gradient of the residual stream (g_dtype, xn's unless PYPHASE_RESIDUAL=bf16grad; without a
    branch, the LayerNorm input's gradient), of the branch output (r_dtype; empty without a branch,
    or when r_dtype is g_dtype: the same values as the first), and the (K, 3, d) fp32 gradients of
    the LayerNorm weight, its bias and the branch's bias. dxn, the incoming gradient of the new residual stream, is None when that
    stream was not used downstream."""
    dh = dh.contiguous()
    kk, n, d = xn.shape
    rows, iters, warps = CONFIG["bwd"]
    # rows per program (and so the parameter gradients' summation order): see kernels.PARTIALS_PACK
    iters = max(1, min(iters, triton.cdiv(n * kernels.PARTIALS_PACK, rows * kernels.BACKWARD_PROGRAMS)))
    progs = triton.cdiv(n, rows * iters)
    dx = torch.empty(xn.shape, device=xn.device, dtype=g_dtype)
    store_dr = _writes_branch_grad(has_r, r_dtype, g_dtype)
    dr = torch.empty(kk, n, d, device=xn.device, dtype=r_dtype) if store_dr else xn.new_empty(0, dtype=r_dtype)
    part = torch.empty(kk, progs, 3, d, device=xn.device, dtype=torch.float32)
    launch(_add_ln_bwd_kernel, (progs, kk))(
        alive_mask(kk, xn.device), dxn.contiguous() if dxn is not None else dh, dh, xn, mean, rstd, w, dx, dr, part, n, w.stride(0), D=d,
        BD=pad_width(d), ROWS=rows, ITERS=iters, HAS_R=has_r, HAS_DXN=dxn is not None, STORE_DR=store_dr,
        EVEN=kernels.unmasked(n % (rows * iters) == 0 and d == pad_width(d)), RN=xn.is_cuda, num_warps=warps)
    return dx, dr, sum_parts(part.view(kk, progs, 3 * d)).view(kk, 3, d)


@_add_ln_bwd.register_fake
def _(dxn: Tensor | None, dh: Tensor, xn: Tensor, mean: Tensor, rstd: Tensor, w: Tensor, r_dtype: torch.dtype,  # type: ignore[no-untyped-def]
      has_r: bool, g_dtype: torch.dtype):
    kk, n, d = xn.shape
    dr = xn.new_empty(kk, n, d, dtype=r_dtype) if _writes_branch_grad(has_r, r_dtype, g_dtype) else \
        xn.new_empty(0, dtype=r_dtype)
    return xn.new_empty(kk, n, d, dtype=g_dtype), dr, xn.new_empty(kk, 3, d)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    x, r, rb, w, b, _ = inputs
    xn, _, mean, rstd = output
    ctx.has_r = r is not None
    # Without a branch the residual stream is the input itself.
    ctx.save_for_backward(xn if ctx.has_r else x, mean, rstd, w)
    ctx.dtypes = (r.dtype if ctx.has_r else x.dtype, rb.dtype if ctx.has_r else x.dtype, w.dtype, b.dtype)


def _backward(ctx, dxn: Tensor | None, dh: Tensor | None, _dmean: Tensor, _drstd: Tensor):  # type: ignore[no-untyped-def]
    xn, mean, rstd, w = ctx.saved_tensors
    r_dt, rb_dt, w_dt, b_dt = ctx.dtypes
    if dh is None and dxn is None:
        return None, None, None, None, None, None
    dh = torch.zeros_like(xn) if dh is None else dh
    if not ctx.has_r:
        dx, _, sums = backward_op(ctx, _add_ln_bwd)(None, dh, xn, mean, rstd, w, r_dt, False, xn.dtype)
        return dx, None, None, sums[:, 0].to(w_dt), sums[:, 1].to(b_dt), None
    return (*branch_grads(ctx, dxn, dh, xn, mean, rstd, w, ctx.dtypes), None)


def branch_grads(ctx, dxn: Tensor | None, dh: Tensor, xn: Tensor, mean: Tensor, rstd: Tensor, w: Tensor,  # type: ignore[no-untyped-def]
                 dtypes: tuple[torch.dtype, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward pass of `x + (r + rb)` and its LayerNorm, inside a backward pass `ctx` (see
    `kernels.backward_op`): gradients of the stream x, of the branch r, of rb, of the LayerNorm's
    weight and bias, in `dtypes` (r, rb, w, b). Inputs as `_add_ln_bwd`'s. `pyphase.mlp_block`
    uses it for its two add + LayerNorms. The stream's gradient is in `ctx.grad_dtype` where the op
    ran by `kernels.call_stream`, else in the stream's dtype."""
    r_dt, rb_dt, w_dt, b_dt = dtypes
    g_dt = getattr(ctx, "grad_dtype", None) or xn.dtype
    dx, dr, sums = backward_op(ctx, _add_ln_bwd)(dxn, dh, xn, mean, rstd, w, r_dt, True, g_dt)
    if dr.numel() == 0 < dx.numel():  # a stream in the branch's dtype: the branch's gradient is the stream's
        dr = dx
    return dx, dr, sums[:, 2].to(rb_dt), sums[:, 0].to(w_dt), sums[:, 1].to(b_dt)


register_autograd(_add_ln_fwd, _backward, _setup)


def add_ln(x: Tensor, r: Tensor | None, rb: Tensor | None, w: Tensor, b: Tensor,
           use_triton: bool | None = None) -> tuple[Tensor, Tensor]:
    """x + (r + rb) and its LayerNorm for K models (see `add_ln_reference`). The LayerNorm output is
    in the autocast dtype when autocast is on (the dtype its consumers cast it to), else fp32."""
    if not (use_triton if use_triton is not None else supported(x, r)):
        return add_ln_reference(x, r, rb, w, b)
    dev = x.device.type
    out = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    xn, h, _, _ = call(_add_ln_fwd, x, r, rb, w, b, out)
    return (x if r is None else xn), h


# ---------------------------------------------------------------------------------------- embedding
# The first LayerNorm reads the embedding: x = wte[idx] + wpe[position]. Uncompiled, the stock path
# is a gather kernel, a broadcast add and the LayerNorm, and in the backward pass an add of the
# residual stream's two gradients (the LayerNorm's and the first block's) before the embedding's
# own backward. `embed_ln` gathers both rows and normalises in one kernel (the tables sit in L2),
# and its backward (`_embed_ln_bwd`) computes the LayerNorm's, the residual stream's and both
# tables' gradients in one kernel.


def _table_rows(idx: Tensor, v: int) -> Tensor:
    """Token ids (K, B, T) of each model as rows of the K models' stacked (K·V, d) token table."""
    kk = idx.shape[0]
    return idx + (torch.arange(kk, device=idx.device) * v).view(kk, 1, 1)


def embed_reference(idx: Tensor, wte: Tensor, wpe: Tensor) -> Tensor:
    """idx (K, B, T) token ids of each model, wte (K, V, d), wpe (K, T_max, d) → residual stream
    x (K, B·T, d) = wte[idx] + wpe[:T], the stock computation."""
    kk, bb, t = idx.shape
    v, d = wte.shape[1:]
    return (F.embedding(_table_rows(idx, v), wte.reshape(kk * v, d)) + wpe[:, None, :t]).reshape(kk, bb * t, d)


def embed_ln_reference(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor,
                       residual_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """`embed_reference`'s residual stream (rounded to residual_dtype if given) and its LayerNorm (w/b (K, d))."""
    x = embed_reference(idx, wte, wpe)
    return add_ln_reference(x if residual_dtype is None else x.to(residual_dtype), None, None, w, b)


if triton is not None:

    @triton.jit
    def _embed_ln_fwd_kernel(ALIVE, IDX, WTE, WPE, W, B, X, H, MEAN, RSTD, N, T, eps, stride_wte, stride_wpe, stride_w,
                             stride_b, D: tl.constexpr, BD: tl.constexpr, ROWS: tl.constexpr):
        pid = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = pid.to(tl.int64) * ROWS
        rows = row0 + tl.arange(0, ROWS)
        cols = tl.arange(0, BD)
        r_ok = rows < N
        c_ok = cols < D
        m = r_ok[:, None] & c_ok[None, :]
        tok = tl.load(IDX + k * N + rows, mask=r_ok, other=0)
        pos = rows % T
        x = (tl.load(WTE + k * stride_wte + tok[:, None] * D + cols[None, :], mask=m, other=0.0)
             + tl.load(WPE + k * stride_wpe + pos[:, None] * D + cols[None, :], mask=m, other=0.0))
        x = x.to(X.dtype.element_ty)  # the residual stream's dtype: normalised as stored
        off = (k * N + rows[:, None]) * D + cols[None, :]
        tl.store(X + off, x, mask=m)
        x = x.to(tl.float32)
        _normalise_rows(x, m, c_ok, r_ok, cols, off, k * N + rows, W + k * stride_w, B + k * stride_b, H, MEAN, RSTD,
                        eps, D)


def _check_embed(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor) -> tuple[int, int, int, int]:
    kk, n = idx.shape[0], idx[0].numel()
    t = idx.shape[-1]
    d = wte.shape[-1]
    if (idx.dim() != 3 or wte.dim() != 3 or wte.shape[0] != kk or wpe.shape[0] != kk or wpe.shape[2] != d
            or wpe.shape[1] < t or w.shape != (kk, d) or b.shape != (kk, d)):
        raise ValueError(f"embed_ln shapes do not match: idx {tuple(idx.shape)}, wte {tuple(wte.shape)}, "
                         f"wpe {tuple(wpe.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)}")
    for name, z in (("wte", wte), ("wpe", wpe)):
        if z.stride(2) != 1 or z.stride(1) != d:
            raise ValueError(f"embed_ln: {name} must have contiguous rows")
    return kk, n, t, d


@torch.library.custom_op("pyphase::embed_ln_fwd", mutates_args=())
def _embed_ln_fwd(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor, out_dtype: torch.dtype,
                  x_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """→ residual stream (K, B·T, d) in x_dtype, its LayerNorm (out_dtype), row means and inverse std."""
    idx = idx.contiguous()
    kk, n, t, d = _check_embed(idx, wte, wpe, w, b)
    x = torch.empty(kk, n, d, device=wte.device, dtype=x_dtype)
    h = torch.empty(kk, n, d, device=wte.device, dtype=out_dtype)
    mean = torch.empty(kk, n, device=wte.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    rows, warps = CONFIG["fwd"]
    launch(_embed_ln_fwd_kernel, (triton.cdiv(n, rows), kk))(
        alive_mask(kk, wte.device), idx, wte, wpe, w, b, x, h, mean, rstd, n, t, EPS, wte.stride(0), wpe.stride(0), w.stride(0), b.stride(0),
        D=d, BD=pad_width(d), ROWS=rows, num_warps=warps)
    return x, h, mean, rstd


@_embed_ln_fwd.register_fake
def _(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor, out_dtype: torch.dtype,  # type: ignore[no-untyped-def]
      x_dtype: torch.dtype):
    kk, n, _, d = _check_embed(idx, wte, wpe, w, b)
    return (wte.new_empty(kk, n, d, dtype=x_dtype), wte.new_empty(kk, n, d, dtype=out_dtype), wte.new_empty(kk, n),
            wte.new_empty(kk, n))


if triton is not None:

    @triton.jit
    def _embed_ln_bwd_kernel(ALIVE, DXN, DH, X, MEAN, RSTD, W, IDX, PART_LN, PART_TE, PART_PE, N, T, NSEQ, SEQ_PER,
                             stride_w, D: tl.constexpr, BD: tl.constexpr, VP: tl.constexpr, ROWS: tl.constexpr,
                             HAS_DXN: tl.constexpr, SPLIT: tl.constexpr, RN: tl.constexpr):
        # Program (p, c, k): positions [p·ROWS, (p+1)·ROWS) of the sequences [c·SEQ_PER, (c+1)·SEQ_PER)
        # of model k. Each row's residual-stream gradient dx is summed into the position table's
        # gradient (rows of a tile are distinct positions) and into the token table's, as
        # onehot(token)ᵀ · dx on the tensor cores, dx split into three bf16 terms (≈ fp32 exact).
        p = tl.program_id(0)
        c = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        pos = p * ROWS + tl.arange(0, ROWS)
        p_ok = pos < T
        cols = tl.arange(0, BD)
        c_ok = cols < D
        vocab = tl.arange(0, VP)
        w = tl.load(W + k * stride_w + cols, mask=c_ok, other=0.0).to(tl.float32)
        acc_dw = tl.zeros([ROWS, BD], tl.float32)
        acc_db = tl.zeros([ROWS, BD], tl.float32)
        acc_pe = tl.zeros([ROWS, BD], tl.float32)
        acc_te = tl.zeros([VP, BD], tl.float32)
        for i in range(SEQ_PER):
            s = c * SEQ_PER + i
            r_ok = p_ok & ((pos * 0 + s) < NSEQ)
            rows = k * N + s.to(tl.int64) * T + pos
            m = r_ok[:, None] & c_ok[None, :]
            off = rows[:, None] * D + cols[None, :]
            dx, dh, xhat = _grad_rows(X, DH, DXN, MEAN, RSTD, rows, off, m, r_ok, w, D, HAS_DXN, RN)
            acc_dw += dh * xhat
            acc_db += dh
            dx = tl.where(m, dx, 0.0)
            acc_pe += dx
            tok = tl.load(IDX + rows, mask=r_ok, other=-1)
            if SPLIT:
                onehot = (vocab[:, None] == tok[None, :]).to(tl.bfloat16)  # (VP, ROWS)
                hi = dx.to(tl.bfloat16)
                rest = dx - hi.to(tl.float32)
                mid = rest.to(tl.bfloat16)
                lo = (rest - mid.to(tl.float32)).to(tl.bfloat16)
                acc_te = tl.dot(onehot, hi, acc_te)
                acc_te = tl.dot(onehot, mid, acc_te)
                acc_te = tl.dot(onehot, lo, acc_te)
            else:  # Triton's interpreter: one fp32 product (its bf16 products are wrong, Triton 3.9)
                acc_te = tl.dot((vocab[:, None] == tok[None, :]).to(tl.float32), dx, acc_te)
        prog = (k * tl.num_programs(1) + c) * tl.num_programs(0) + p
        part = PART_LN + prog * 2 * D + cols
        tl.store(part, tl.sum(acc_dw, 0), mask=c_ok)
        tl.store(part + D, tl.sum(acc_db, 0), mask=c_ok)
        tl.store(PART_TE + prog * VP * D + vocab[:, None] * D + cols[None, :], acc_te,
                 mask=(vocab[:, None] < VP) & c_ok[None, :])
        tl.store(PART_PE + ((k * tl.num_programs(1) + c) * T + pos[:, None]) * D + cols[None, :], acc_pe,
                 mask=p_ok[:, None] & c_ok[None, :])


def _embed_grid(n: int, t: int) -> tuple[int, int, int, int]:
    """→ (position blocks, sequence chunks, sequences per chunk, positions per program)."""
    rows, _, programs = CONFIG["embed_bwd"]
    pb = triton.cdiv(t, rows)
    nseq = n // t
    # sequences per chunk (the position embedding's summation order) for kernels.PARTIALS_PACK, not kk
    chunks = max(1, min(nseq, programs // max(1, pb * kernels.PARTIALS_PACK)))
    per = triton.cdiv(nseq, chunks)
    return pb, triton.cdiv(nseq, per), per, rows


@torch.library.custom_op("pyphase::embed_ln_bwd", mutates_args=())
def _embed_ln_bwd(dxn: Tensor | None, dh: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, w: Tensor, idx: Tensor,
                  v: int, t_max: int) -> tuple[Tensor, Tensor, Tensor]:
    """Backward pass of `embed_ln` in one kernel (table tile ≤ EMBED_MAX_TILE) → fp32 gradients of
    the token table (K, v, d), the position table (K, t_max, d) and the LayerNorm's weight and bias
    (K, 2, d). dxn: the incoming gradient of the residual stream (None if it was not used)."""
    dh, idx = dh.contiguous(), idx.contiguous()
    kk, n, d = x.shape
    t = idx.shape[-1]
    pb, chunks, per, rows = _embed_grid(n, t)
    vp = pad_width(v)
    progs = pb * chunks
    f32 = dict(device=x.device, dtype=torch.float32)
    part_ln = torch.empty(kk, progs, 2 * d, **f32)
    part_te = torch.empty(kk, progs, vp * d, **f32)
    part_pe = torch.empty(kk, chunks, t * d, **f32)
    launch(_embed_ln_bwd_kernel, (pb, chunks, kk))(
        alive_mask(kk, x.device), dxn.contiguous() if dxn is not None else dh, dh, x, mean, rstd, w, idx, part_ln, part_te, part_pe, n, t,
        n // t, per, w.stride(0), D=d, BD=pad_width(d), VP=vp, ROWS=rows,
        HAS_DXN=dxn is not None, SPLIT=not kernels.interpreted(), RN=x.is_cuda, num_warps=CONFIG["embed_bwd"][1])
    dwte = sum_parts(part_te).view(kk, vp, d)[:, :v].contiguous()
    dwpe = x.new_zeros(kk, t_max, d, dtype=torch.float32)
    dwpe[:, :t] = sum_parts(part_pe).view(kk, t, d)
    return dwte, dwpe, sum_parts(part_ln).view(kk, 2, d)


@_embed_ln_bwd.register_fake
def _(dxn: Tensor | None, dh: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, w: Tensor, idx: Tensor, v: int,  # type: ignore[no-untyped-def]
      t_max: int):
    kk, _, d = x.shape
    return x.new_empty(kk, v, d, dtype=torch.float32), x.new_empty(kk, t_max, d, dtype=torch.float32), \
        x.new_empty(kk, 2, d, dtype=torch.float32)


def _embed_setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    idx, wte, wpe, w, b, _, _ = inputs
    x, _, mean, rstd = output
    ctx.save_for_backward(idx, x, mean, rstd, w)
    ctx.shapes = (tuple(wte.shape), tuple(wpe.shape))
    ctx.dtypes = (wte.dtype, wpe.dtype, w.dtype, b.dtype)


def _embed_backward(ctx, dx: Tensor | None, dh: Tensor | None, _dmean: Tensor, _drstd: Tensor):  # type: ignore[no-untyped-def]
    idx, x, mean, rstd, w = ctx.saved_tensors
    (kk, v, d), (_, t_max, _) = ctx.shapes
    wte_dt, wpe_dt, w_dt, b_dt = ctx.dtypes
    if dh is None and dx is None:
        return None, None, None, None, None, None, None
    dh = torch.zeros_like(x) if dh is None else dh
    if v <= EMBED_MAX_VOCAB and pad_width(v) * pad_width(d) <= EMBED_MAX_TILE:
        # everything in one kernel, the residual stream's gradient never written
        dwte, dwpe, sums = backward_op(ctx, _embed_ln_bwd)(dx, dh, x, mean, rstd, w, idx, v, t_max)
        return None, dwte.to(wte_dt), dwpe.to(wpe_dt), sums[:, 0].to(w_dt), sums[:, 1].to(b_dt), None, None
    # the residual stream's whole gradient: the LayerNorm's plus the one arriving from downstream
    gx, _, sums = backward_op(ctx, _add_ln_bwd)(dx, dh, x, mean, rstd, w, x.dtype, False, x.dtype)
    gx = gx.float()
    t = idx.shape[-1]
    dwte = torch.ops.aten.embedding_dense_backward(gx.view(-1, d), _table_rows(idx, v).view(-1), kk * v, -1, False)
    dwpe = gx.new_zeros(kk, t_max, d)
    dwpe[:, :t] = gx.view(kk, -1, t, d).sum(dim=1)
    return (None, dwte.view(kk, v, d).to(wte_dt), dwpe.to(wpe_dt), sums[:, 0].to(w_dt), sums[:, 1].to(b_dt), None,
            None)


register_autograd(_embed_ln_fwd, _embed_backward, _embed_setup, stream=(None, 0))


def embed_ln(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor, residual_dtype: torch.dtype | None = None,
             use_triton: bool | None = None) -> tuple[Tensor, Tensor]:
    """The embedding wte[idx] + wpe[position] of K models as the residual stream (K, B·T, d; in the
    tables' dtype, or rounded to residual_dtype) and its LayerNorm (see `embed_ln_reference`), in
    one kernel on CUDA (unless PYPHASE_LN=torch). The LayerNorm output is in the autocast dtype when
    autocast is on, else fp32."""
    x, h, _ = embed_ln_stream(idx, wte, wpe, w, b, residual_dtype, None, use_triton)
    return x, h


def embed_ln_stream(idx: Tensor, wte: Tensor, wpe: Tensor, w: Tensor, b: Tensor,
                    residual_dtype: torch.dtype | None, grad_dtype: torch.dtype | None,
                    use_triton: bool | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """`embed_ln` → (x, h, carrier): with grad_dtype, where the kernel runs uncompiled, the stream x
    comes out non-differentiable and its gradient arrives in grad_dtype through the carrier
    (`kernels.call_stream`); otherwise the carrier is None."""
    if not (use_triton if use_triton is not None else (supported(wte, None) and wte.dtype == torch.float32)):
        return (*embed_ln_reference(idx, wte, wpe, w, b, residual_dtype), None)
    dev = wte.device.type
    out = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else wte.dtype
    args = (idx, wte, wpe, w, b, out, residual_dtype or wte.dtype)
    if grad_dtype is not None and not torch.compiler.is_compiling():
        x, h, _, _, c = call_stream(_embed_ln_fwd, grad_dtype, *args)
        return x, h, c
    x, h, _, _ = call(_embed_ln_fwd, *args)
    return x, h, None
