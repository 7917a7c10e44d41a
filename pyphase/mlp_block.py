"""The MLP half of a pre-LN block, from the attention branch's output to the next LayerNorm, as one
forward kernel for K packed models (CUDA).

    x1 = x0 + (p + pb)              the attention projection's output p (and bias) added to the stream
    h  = LN(x1) · lw + lb           the block's second LayerNorm
    m  = gelu(h @ w1 + b1) @ w2     the MLP (pyphase.mlp)
    x2 = x1 + (m + b2)
    h2 = LN(x2) · nw + nb           the next block's first LayerNorm, or the final one

Unfused that is three kernels, `add_ln`, the MLP's forward and `add_ln` again, and the residual
stream and both LayerNorm outputs make extra trips through memory: the MLP reads h back, writes m,
and the second `add_ln` reads m and x1 back. Here one program per tile of rows (d is one tile
wide, so every row is whole on chip) does all of it: the add and LayerNorm before the MLP's loop
over hidden chunks, the add and the next LayerNorm after it. It writes what the backward pass
needs (x1, h, x2 and both rows' statistics) and h2; m never reaches memory.

The computation and its roundings are those of the unfused kernels, step by step (the same
expressions: `layernorm`'s `_add_rows` and `_normalise_rows`, `mlp`'s `_fc1_chunk` and
`_fc2_chunk`), and the backward pass is theirs: `layernorm`'s add + LayerNorm backward, the MLP's
"dw" backward, `layernorm`'s again, in the order autograd ran them unfused. On the H100 it gives the
unfused kernels' bits (tests and a whole phase3a, results/bench/README.md). `mlp_block` falls back
to the unfused ops (which pick their own kernels or the stock path) on the CPU, when one of them is
switched off (PYPHASE_MLP=torch, PYPHASE_LN=torch), when the MLP's backward mode is not "dw", or
with PYPHASE_MLP_BLOCK=off.

What it gains is small: the kernel holds a LayerNorm's fp32 row tile besides the MLP's accumulator
and ran at 255 registers a thread (the MLP forward alone: 127), so fewer programs share an SM.
With the MLP forward's launch it made the step slower; `CONFIG` states what was measured. Since
session 13 it reads h back as stored before the MLP's loop and stages the MLP's output through
memory for the second add + LayerNorm ("stage"), which with 32 hidden units a chunk brings it to
168 registers without spills: three programs an SM instead of two.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from pyphase import layernorm, mlp
from pyphase.kernels import (alive_mask, backward_op, call, call_stream, launch, pad_width, register_autograd, register_cap,
                             rejoin)
from pyphase.layernorm import EPS, add_ln
from pyphase.mlp import gelu_mlp

try:
    import triton
    import triton.language as tl

    from pyphase.kernels import below
    from pyphase.layernorm import _add_rows, _normalise_rows
    from pyphase.mlp import _fc1_chunk, _fc2_chunk
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

# "fwd": (rows per tile, hidden units per chunk, warps, pipeline stages), None: the MLP forward's;
# "fuse": (first add + LayerNorm in the kernel, second in the kernel), each 0 or 1; a step left out
# runs layernorm's add + LayerNorm kernel; "stage": 1 reads h back before the MLP's loop and stages
# the MLP's output through memory (the kernel's STAGE); "maxnreg": a register cap (0: none).
# `set_config` parses "ROWS,HIDDEN,WARPS,STAGES[,MAXNREG]/PRO,EPI[,STAGE]".
# Chosen on the H100 (K = 5, `benches/profile_step.py --block-config`; results/bench/mlp_block_*):
# with the MLP forward's own launch (64, 32, 4, 2) the fused kernel made the step slower (15.16
# against 14.62 ms at B = 256); (64, 64, 4, 3) made it faster, 14.36 against 14.67-14.70 ms at
# B = 256 and 7.74 against 7.90 ms at B = 128, in one call (mlp_block_sweep2_dac2b52.txt). Staged,
# (64, 32, 4, 3) at 168 registers (no spills, three programs an SM): 13.725 / 13.752 against 13.869 /
# 13.859 ms at B = 256, 7.428 / 7.410 against 7.469 / 7.464 ms at B = 128, the same losses; staged
# without the cap or at other tiles 13.895-14.846 ms (results/bench/mlp_block_stage_h100_095cb89.txt).
CONFIG: dict[str, tuple[int, ...] | int | None] = {"fwd": (64, 32, 4, 3), "fuse": (1, 1), "stage": 1, "maxnreg": 168}
# The last compiled kernel launched (register and spill counts for benches/profile_step.py).
LAST: dict[str, object] = {}


def set_config(spec: str) -> None:
    """Set CONFIG from "FWD" or "FWD/FUSE": FWD "ROWS,HIDDEN,WARPS,STAGES[,MAXNREG]" or "mlp" (the MLP
    forward's launch), FUSE "PRO,EPI[,STAGE]" (each 0 or 1); MAXNREG and STAGE default to 0."""
    fc, _, fu = spec.strip().partition("/")
    try:
        fwd = None if fc.strip() == "mlp" else tuple(int(v) for v in fc.split(","))
        fuse = tuple(int(v) for v in fu.split(",")) if fu else (1, 1)
    except ValueError:
        raise ValueError(f"mlp_block launch configuration {spec!r}: expected integers like '64,64,4,3/1,1'") from None
    if ((fwd is not None and (len(fwd) not in (4, 5) or (len(fwd) == 5 and not 0 <= fwd[4] <= 255)))
            or len(fuse) not in (2, 3) or not set(fuse) <= {0, 1}):
        raise ValueError(f"mlp_block launch configuration {spec!r}: expected 'ROWS,HIDDEN,WARPS,STAGES[,MAXNREG]' or "
                         "'mlp', optionally '/PRO,EPI[,STAGE]' (each 0 or 1)")
    CONFIG.update(fwd=None if fwd is None else fwd[:4], maxnreg=fwd[4] if fwd is not None and len(fwd) == 5 else 0,
                  fuse=fuse[:2], stage=fuse[2] if len(fuse) == 3 else 0)


# The widest d (padded) the fused kernel takes: its row tiles are d wide and it was measured at
# d = 128 only (at 255 registers a thread there); wider models take the unfused kernels.
MAX_WIDTH = 128


def supported(x0: Tensor, p: Tensor, w1: Tensor) -> bool:
    """Whether `mlp_block` runs the fused kernel: where the unfused path would run the add +
    LayerNorm and MLP kernels with the "dw" backward, d at most MAX_WIDTH (padded), unless
    PYPHASE_MLP_BLOCK=off."""
    if triton is None or os.environ.get("PYPHASE_MLP_BLOCK", "").lower() in ("off", "0", "no"):
        return False
    return (x0.dim() == 3 and pad_width(x0.shape[-1]) <= MAX_WIDTH and layernorm.supported(x0, p)
            and mlp.supported(p, w1) and mlp.CONFIG["bwd_mode"] == "dw")


def mlp_block_reference(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor,
                        w2: Tensor, b2: Tensor, nw: Tensor, nb: Tensor) -> tuple[Tensor, Tensor]:
    """The unfused ops: `add_ln`, `gelu_mlp`, `add_ln` → (x2, h2)."""
    x1, h = add_ln(x0, p, pb, lw, lb)
    return add_ln(x1, gelu_mlp(h, w1, b1, w2), b2, nw, nb)


if triton is not None:

    @triton.jit
    def _mlp_block_fwd_kernel(ALIVE, X0, P, PB, LW, LB, W1, B1, W2, B2, NW, NB, X1, H, MEAN1, RSTD1, X2, H2, MEAN2, RSTD2, M,
                              N, eps, s_pb, s_lw, s_lb, s_b2, s_nw, s_nb, D: tl.constexpr, FF: tl.constexpr,
                              BD: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr, EVEN: tl.constexpr,
                              PRO: tl.constexpr, EPI: tl.constexpr, STAGE: tl.constexpr, HW_RCP: tl.constexpr):
        # PRO: the first add + LayerNorm here (else h is read, written by layernorm's kernel); EPI:
        # the second add + LayerNorm here (else the MLP's output is written to M for layernorm's
        # kernel). STAGE: h read back as stored before the MLP's loop (the loop's products then take
        # it from shared memory, not from registers), and the MLP's output staged through M for the
        # second add + LayerNorm (so it runs in the layout the loads give, without the product's
        # accumulator live): fewer registers a thread (`CONFIG`).
        pid_m = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = pid_m.to(tl.int64) * BM
        rows = tl.arange(0, BM)
        cols = tl.arange(0, BD)
        r_ok = below(row0 + rows, N, EVEN)  # EVEN: N a multiple of BM, D = BD (masks that fold away)
        c_ok = below(cols, D, EVEN)
        m = r_ok[:, None] & c_ok[None, :]
        off = (k * N + row0) * D + rows[:, None] * D + cols[None, :]
        stat = k * N + row0 + rows
        dt = W1.dtype.element_ty
        if PRO:
            # x1 = x0 + (p + pb) and its LayerNorm, as layernorm._add_ln_fwd_kernel
            x1 = tl.load(X0 + off, mask=m, other=0.0).to(tl.float32)
            x1 = _add_rows(x1, P, PB + k * s_pb, off, m, cols, c_ok)
            tl.store(X1 + off, x1.to(X1.dtype.element_ty), mask=m)
            h = _normalise_rows(x1, m, c_ok, r_ok, cols, off, stat, LW + k * s_lw, LB + k * s_lb, H, MEAN1, RSTD1,
                                eps, D)
        else:
            h = tl.load(H + off, mask=m, other=0.0)
        if STAGE and PRO:
            tl.debug_barrier()  # every thread's h stored
            h = tl.load(H + off, mask=m, other=0.0)
        h = h.to(dt)
        # the MLP, as mlp._mlp_fwd_kernel (masked rows/columns of h are never stored from)
        W1 += k * D * FF
        W2 += k * FF * D
        B1 += k * FF
        acc = tl.zeros([BM, BD], tl.float32)
        for j in range(0, FF, BH):
            hid = j + tl.arange(0, BH)
            h_ok = hid < FF
            acc = _fc2_chunk(acc, _fc1_chunk(h, W1, B1, hid, h_ok, cols, c_ok, FF, EVEN), W2, hid, h_ok, cols, c_ok,
                             D, EVEN, HW_RCP)
        if EPI:
            # x2 = x1 + (m + b2) and the next LayerNorm, as the next add_ln, from x1 read back as
            # stored once all threads' stores of it are done (keeping it in registers instead spilled
            # and changed the bits on the H100: results/bench/mlp_block_sweep_dac2b52.txt, "1,1,0")
            if STAGE:
                tl.store(M + off, acc.to(dt), mask=m)
                tl.debug_barrier()
                # the tile's offsets and masks computed again (written otherwise, so the compiler
                # does not keep the first ones live in registers through the loop)
                rows_e = tl.arange(0, BM)
                off = (k * N + row0) * D + (rows_e[:, None] * D + cols[None, :])
                r_ok = below(rows_e, N - row0, EVEN)
                m = r_ok[:, None] & c_ok[None, :]
                y = tl.load(M + off, mask=m, other=0.0).to(tl.float32)
            else:
                y = acc.to(dt).to(tl.float32)
                tl.debug_barrier()
            x = tl.load(X1 + off, mask=m, other=0.0).to(tl.float32)
            b2 = tl.load(B2 + k * s_b2 + cols, mask=c_ok, other=0.0).to(tl.float32)
            x = x + (y + b2[None, :]).to(dt).to(tl.float32)
            tl.store(X2 + off, x.to(X2.dtype.element_ty), mask=m)
            _normalise_rows(x, m, c_ok, r_ok, cols, off, stat, NW + k * s_nw, NB + k * s_nb, H2, MEAN2, RSTD2, eps, D)
        else:
            tl.store(M + off, acc.to(dt), mask=m)


def _check(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
           nw: Tensor, nb: Tensor) -> tuple[int, int, int, int]:
    kk, n, d = x0.shape
    f = w1.shape[-1]
    vecs = {"pb": pb, "lw": lw, "lb": lb, "b2": b2, "nw": nw, "nb": nb}
    if (p.shape != x0.shape or w1.shape != (kk, d, f) or b1.shape != (kk, f) or w2.shape != (kk, f, d)
            or any(v.shape != (kk, d) for v in vecs.values())):
        shapes = ", ".join(f"{k} {tuple(z.shape)}" for k, z in (("x0", x0), ("p", p), ("w1", w1), ("b1", b1),
                                                               ("w2", w2), *vecs.items()))
        raise ValueError(f"mlp_block shapes do not match: {shapes}")
    for name, z in vecs.items():
        if z.stride(-1) != 1:
            raise ValueError(f"mlp_block: {name} must have a contiguous last dimension")
    return kk, n, d, f


@torch.library.custom_op("pyphase::mlp_block_fwd", mutates_args=())
def _mlp_block_fwd(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                   b2: Tensor, nw: Tensor, nb: Tensor, out_dtype: torch.dtype
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """→ x1, h (out_dtype), its row means and inverse std, x2, h2 (out_dtype), its row means and
    inverse std (x1, x2 in x0's dtype)."""
    x0, p, w1, b1, w2 = (z.contiguous() for z in (x0, p, w1, b1, w2))
    kk, n, d, f = _check(x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb)
    x1, x2 = torch.empty_like(x0), torch.empty_like(x0)
    h = torch.empty(kk, n, d, device=x0.device, dtype=out_dtype)
    h2 = torch.empty_like(h)
    stats = [torch.empty(kk, n, device=x0.device, dtype=torch.float32) for _ in range(4)]
    # the MLP forward's tiles, grid and masks, with this kernel's own launch (CONFIG)
    grid, meta = mlp._launch("fwd", n, d, f, kk, CONFIG["fwd"] or mlp.CONFIG["fwd"])  # type: ignore[arg-type]
    pro, epi = (bool(v) for v in CONFIG["fuse"] or (1, 1))
    stage = bool(CONFIG["stage"])
    if not pro:
        layernorm._launch_fwd(x0, p, pb, lw, lb, x1, h, stats[0], stats[1])
    y = x0.new_empty(0, dtype=w1.dtype) if epi and not stage else torch.empty(kk, n, d, device=x0.device,
                                                                                 dtype=w1.dtype)
    meta.update(register_cap(CONFIG["maxnreg"], x0))  # type: ignore[arg-type]
    LAST["fwd"] = launch(_mlp_block_fwd_kernel, grid)(
        alive_mask(kk, x0.device), x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb, x1, h, stats[0], stats[1], x2, h2, stats[2], stats[3], y, n, EPS,
        pb.stride(0), lw.stride(0), lb.stride(0), b2.stride(0), nw.stride(0), nb.stride(0), D=d, FF=f, PRO=pro,
        EPI=epi, STAGE=stage, **meta)
    if not epi:
        layernorm._launch_fwd(x1, y, b2, nw, nb, x2, h2, stats[2], stats[3])
    return x1, h, stats[0], stats[1], x2, h2, stats[2], stats[3]


@_mlp_block_fwd.register_fake
def _(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,  # type: ignore[no-untyped-def]
      nw: Tensor, nb: Tensor, out_dtype: torch.dtype):
    kk, n, d, _ = _check(x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb)
    h = x0.new_empty(kk, n, d, dtype=out_dtype)
    stat = x0.new_empty(kk, n, dtype=torch.float32)
    return torch.empty_like(x0), h, stat, torch.empty_like(stat), torch.empty_like(x0), torch.empty_like(h), \
        torch.empty_like(stat), torch.empty_like(stat)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb, _ = inputs
    x1, h, mean1, rstd1, x2, _, mean2, rstd2 = output
    ctx.save_for_backward(x1, h, mean1, rstd1, x2, mean2, rstd2, lw, w1, b1, w2, nw)
    # (branch, its bias, LayerNorm weight, bias) of the first add + LayerNorm, then the second's; b1
    ctx.dtypes = ((p.dtype, pb.dtype, lw.dtype, lb.dtype), (w1.dtype, b2.dtype, nw.dtype, nb.dtype), b1.dtype)


def _backward(ctx, dx1, dh, _dm1, _dr1, dx2, dh2, _dm2, _dr2):  # type: ignore[no-untyped-def]
    """The unfused ops' backward passes in autograd's order: the second add + LayerNorm, the MLP,
    the first add + LayerNorm."""
    x1, h, mean1, rstd1, x2, mean2, rstd2, lw, w1, b1, w2, nw = ctx.saved_tensors
    first, second, b1_dt = ctx.dtypes
    if dx2 is None and dh2 is None and dx1 is None and dh is None:
        return (None,) * 12
    dh2 = torch.zeros_like(h) if dh2 is None else dh2
    g1, dm, db2, dnw, dnb = layernorm.branch_grads(ctx, dx2, dh2, x2, mean2, rstd2, nw, second)
    dhm, dw1, db1, dw2 = backward_op(ctx, mlp._mlp_bwd_dw)(dm, h, w1, b1, w2)
    if dh is not None:
        dhm = dhm + dh
    if dx1 is not None:
        g1 = g1 + dx1
    g0, dp, dpb, dlw, dlb = layernorm.branch_grads(ctx, g1, dhm, x1, mean1, rstd1, lw, first)
    return g0, dp, dpb, dlw, dlb, dw1, db1.to(b1_dt), dw2, db2, dnw, dnb, None


register_autograd(_mlp_block_fwd, _backward, _setup, stream=(0, 4))


def mlp_block(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
              b2: Tensor, nw: Tensor, nb: Tensor, use_triton: bool | None = None) -> tuple[Tensor, Tensor]:
    """See `mlp_block_stream` (without a carrier)."""
    x2, h2, _ = mlp_block_stream(x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb, None, use_triton)
    return x2, h2


def mlp_block_stream(x0: Tensor, p: Tensor, pb: Tensor, lw: Tensor, lb: Tensor, w1: Tensor, b1: Tensor,
                     w2: Tensor, b2: Tensor, nw: Tensor, nb: Tensor, c0: Tensor | None,
                     use_triton: bool | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """From the residual stream x0 (K, N, d) and the attention branch's output p (K, N, d; bias pb
    (K, d)) to the new residual stream x2 and the next LayerNorm's output h2 (see the module's
    docstring): LayerNorm weights lw/lb and nw/nb (K, d), MLP weights w1 (K, d, f), b1 (K, f),
    w2 (K, f, d), b2 (K, d). One kernel where `supported` (or when `use_triton` forces it, e.g. in
    the interpreter), else `mlp_block_reference`. The LayerNorm outputs are in the autocast dtype
    when autocast is on, else x0's; the MLP's operands are cast to the autocast dtype as
    `gelu_mlp` casts them. With a carrier c0 (x0 non-differentiable, its gradient in c0's dtype,
    `kernels.call_stream`) the kernel's x2 comes out the same way, with its carrier; the fallback
    takes the gradient back into x0's dtype (`kernels.rejoin`) and returns None for a carrier."""
    fused = use_triton if use_triton is not None else supported(x0, p, w1)
    if c0 is not None and not (fused and not torch.compiler.is_compiling()):
        # no carrier form here: the stream's gradient back in its own dtype from here on
        x0, c0 = rejoin(x0, c0), None
    if not fused:
        return (*mlp_block_reference(x0, p, pb, lw, lb, w1, b1, w2, b2, nw, nb), None)
    dev = x0.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        w1, b1, w2 = w1.to(dt), b1.to(dt), w2.to(dt)
        out = dt
    else:
        out = x0.dtype
    args = (x0, p, pb, lw, lb, w1, b1.to(w1.dtype), w2, b2, nw, nb, out)
    if c0 is not None:
        _, _, _, _, x2, h2, _, _, c2 = call_stream(_mlp_block_fwd, c0.dtype, *args, c0)
        return x2, h2, c2
    _, _, _, _, x2, h2, _, _ = call(_mlp_block_fwd, *args)
    return x2, h2, None
