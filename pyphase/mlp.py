"""The transformer MLP, `gelu(h @ w1 + b1) @ w2`, as two fused Triton kernels (CUDA).

`gelu_mlp(h, w1, b1, w2)` computes it for K packed models (the fc2 bias is left to the caller, where
the compiler fuses it with the residual add). The stock path moves the 4d-wide hidden layer through
memory many times: the fc1 product, then bias + GELU reading it and writing the activation, fc2
reading that; in the backward pass the gradient w.r.t. the activation, GELU's backward reading it
and the pre-activation, a separate reduction for the bias gradient, and the GEMM for the input's
gradient reading the pre-activation's gradient again. Here:

- forward, one kernel per tile of rows: for each chunk of hidden units, fc1's product, bias, GELU and
  the chunk's contribution to fc2's product, accumulated on chip; neither the pre-activation nor
  the activation reaches memory (in the default backward mode "dw").
- backward ("dw", the default since 5e33660), one program per chunk of hidden units and span of
  rows: recomputes the chunk's pre-activation from the MLP's input, `dy @ w2^T`, GELU's derivative,
  writes the pre-activation's gradient, and accumulates the chunk's share of both weight gradients
  and of the bias gradient over its rows on chip (per-span partial sums, summed in a fixed order).
  The input's gradient is one cuBLAS product of the written pre-activation gradient. Programs of
  one span run side by side, so the input and dy tiles they share come from L2.
- backward ("fused", the earlier default), one program per tile of rows: the same from a saved
  pre-activation, the input's gradient accumulated on chip, the weight gradients by cuBLAS from
  the written pre-activation gradient and activation.

Numerics follow the stock path under bf16 autocast: GEMM outputs are rounded to the input dtype,
the bias is added to the rounded product and rounded again, GELU (the erf form, not tanh's) and its
derivative are computed in fp32 from the rounded pre-activation; the kernels compute the Gaussian
CDF to 1.5e-7 (Abramowitz & Stegun 7.1.26, `_gelu_parts`), far below the bf16 rounding of
everything it feeds. `gelu_mlp_reference` is the stock computation the tests compare against; on
the CPU the kernels run in Triton's interpreter (fp32).

On by default on CUDA (PYPHASE_MLP=torch turns it off); what it measured is stated at `supported`
and `CONFIG`. What it does not reach: the "dw" backward kernel holds two fp32 weight-gradient
tiles on chip and runs at ~220 registers a thread, so few programs share an SM, and wider hidden
chunks (fewer re-reads of the input and dy tiles from L2) run out of shared memory or spill
(results/bench/bench_mlp_dw_bigtiles_bb47106.txt). Written by hand in Gluon, with every product on
asynchronous warpgroup MMA, it was no faster: the same latency limit at 8 warps an SM
(results/bench/gluon_dw_h100_e592c76.txt). GELU with libdevice's erf and a separate exp
cost ~0.25 ms a layer of the forward and backward kernels together on the H100
(bench_mlp_gelu_cost_e5ce101.txt); `_gelu_parts`'s polynomial sharing one exp2 between the CDF and
the density made the K = 5 step 15.08 -> 14.64 ms at B = 256, 8.10 -> 7.88 ms at B = 128
(results/bench/gelu_ab_f3c0e9c.txt).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from pyphase import kernels
from pyphase.kernels import (alive_mask, autocast_operands, backward_op, call, launch, pad_width, register_autograd,
                             sum_parts)

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

# (rows per tile, hidden units per chunk, warps, pipeline stages) of the two kernels. An optional
# fifth entry 0 for "bwd" leaves the bias gradient to a torch sum over the written pre-activation
# gradient instead of per-tile partial sums in the kernel. "bwd_mode": "fused" (one program per
# tile of rows walks all hidden chunks and accumulates the input's gradient on chip), "split" (one
# program per tile and chunk; the input's gradient is a cuBLAS product) or "torch" (the backward
# pass in torch ops, which torch.compile fuses like the stock path) or "dw" (the forward pass stores
# no pre-activation; one program per hidden chunk and span of rows recomputes it, writes the
# pre-activation's gradient and accumulates both weight gradients and the bias gradient on chip;
# the input's gradient is a cuBLAS product; its fifth "bwd" entry is the rows per span, default
# 4096). `set_config` parses them.
# Chosen by `benches/bench_mlp.py` on the H100 (K = 5, N = 65,536, d = 128, hidden 512; commit
# 5e33660, results/bench/bench_mlp_dw_5e33660.txt): forward + backward 1.44 ms per layer against
# 1.83 ms for "fused" (64, 32, 4, 3) and 1.87 ms for the compiled stock MLP; in the uncompiled
# K = 5, B = 256 training step 17.41 against 18.54 ms (-6.1%, variants_k5_b256_dw_5e33660.txt).
# Spans of 4,096 rows (half the partial sums to add up) since dd928ea: step 16.12 against 16.26-16.27
# ms with 2,048 (variants_k5_b256_dd928ea.txt).
CONFIG: dict[str, tuple[int, ...] | str] = {"fwd": (64, 32, 4, 2), "bwd": (64, 32, 4, 3, 4096), "bwd_mode": "dw"}
# Fewest rows a "dw" backward program takes when more programs are wanted (kernels.BACKWARD_PROGRAMS):
# measured on the H100 (results/bench/programs_sweep_*.txt), 2,048-row spans were best at B = 128
# (K = 5), while at B = 32 (K = 7 and 4) spans under 2,048 rows made the step 2-5% slower.
MIN_SPAN = 2048
# The last compiled kernel launched of each kind (register and spill counts for benches/bench_mlp.py).
LAST: dict[str, object] = {}


def set_config(spec: str) -> None:
    """Set CONFIG from "FWD" or "FWD/BWD": FWD "rows,hidden,warps,stages" (also used for BWD when
    BWD is absent), BWD "torch", "split:..." or "..." (fused) with an optional fifth entry."""
    fc, _, bc = spec.strip().partition("/")
    mode, _, nums = bc.strip().rpartition(":")
    try:
        fwd = tuple(int(v) for v in fc.split(","))
        bwd = fwd if nums == "torch" else tuple(int(v) for v in (nums or fc).split(","))
    except ValueError:
        raise ValueError(f"MLP launch configuration {spec!r}: expected integers like '64,32,4,2/split:64,32,4,3'") from None
    if len(fwd) != 4 or len(bwd) not in (4, 5) or mode not in ("", "fused", "split", "dw"):
        raise ValueError(f"MLP launch configuration {spec!r}: expected 'FWD' or 'FWD/BWD' with 4 numbers each "
                         "(BWD may add a fifth, or be 'torch', or start with 'split:' or 'dw:')")
    CONFIG.update(fwd=fwd, bwd=bwd, bwd_mode="torch" if nums == "torch" else (mode or "fused"))


def config_spec() -> str:
    """CONFIG as the string `set_config` reads."""
    fwd, bwd, mode = (",".join(map(str, CONFIG["fwd"])), CONFIG["bwd"], CONFIG["bwd_mode"])
    if mode == "torch":
        return f"{fwd}/torch"
    return f"{fwd}/{'' if mode == 'fused' else mode + ':'}{','.join(map(str, bwd))}"


def supported(h: Tensor, w1: Tensor) -> bool:
    """Whether to use the Triton kernels for these inputs (else `gelu_mlp_reference`): CUDA tensors
    of a float dtype with d and the hidden width multiples of 16, unless PYPHASE_MLP=torch.

    On by default since measured faster on the H100 (torch 2.11, Triton 3.6, K = 5, B = 256,
    `benches/profile_step.py --variants triton_mlp,default`, commit 57fb4a4): the whole packed
    training step 18.49 ms against 19.04 ms with the stock MLP (-2.9%)."""
    if triton is None or os.environ.get("PYPHASE_MLP", "").lower() == "torch":
        return False
    d, f = w1.shape[-2:]
    return h.is_cuda and d % 16 == 0 and f % 16 == 0 and h.dtype in (torch.bfloat16, torch.float16, torch.float32)


def gelu_mlp_reference(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """The stock computation: h (K, N, d), w1 (K, d, f), b1 (K, f), w2 (K, f, d) → (K, N, d)."""
    a = torch.bmm(h, w1)
    return torch.bmm(F.gelu(a + b1[:, None].to(a.dtype)), w2)


if triton is not None:

    @triton.jit
    def _recip(x, HW_RCP: tl.constexpr):
        """1 / x for 1 <= x < 2^126 (fp32). With HW_RCP (on the GPU) the bare hardware reciprocal
        (PTX rcp.approx.ftz.f32, SASS MUFU.RCP): Triton compiles `1.0 / x` to div.full.f32, which
        is that same MUFU.RCP times the numerator, after range checks that rescale denominators
        above 2^126 or below 2^-126. GELU's 1 + p|z| (p = 0.2316, any finite fp32 z) is at most
        7.9e37 < 2^126 ≈ 8.5e37, and infinite z gives 0 either way, so the bits are the same, in 1
        instruction instead of 8 (`gelu_rcp`). On the H100 the K = 5 step took 1.5-1.8% less
        (results/bench/profile_ab_gelu_rcp_k5_b*_3e102d3.txt). Triton's interpreter runs no inline PTX."""
        if HW_RCP:
            out = tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                            is_pure=True, pack=1)
        else:
            out = 1.0 / x
        return out

    @triton.jit
    def _gelu_parts(z, HW_RCP: tl.constexpr):
        """GELU's Gaussian CDF and density at z (fp32). erf by Abramowitz & Stegun 7.1.26
        (|error| <= 1.5e-7, far below the bf16 rounding of what uses it): erfc(x) for x >= 0 is
        poly(1 / (1 + p x)) · exp(-x²), and exp(-x²) at x = |z|/√2 is the density's exp(-z²/2),
        so one exp2 serves both."""
        e = tl.exp2(z * z * -0.7213475204444817)  # exp(-z²/2)
        t = _recip(1.0 + 0.23164188826636 * tl.abs(z), HW_RCP)  # p / √2 = 0.3275911 / √2
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        half_erfc = 0.5 * poly * e  # = 1 - cdf(|z|)
        cdf = tl.where(z >= 0, 1.0 - half_erfc, half_erfc)
        return cdf, e * 0.3989422804014327

    @triton.jit
    def _fc1_chunk(x, W1, B1, hid, h_ok, cols, c_ok, FF: tl.constexpr, EVEN: tl.constexpr):
        """Hidden units `hid` of the pre-activation x @ w1 + b1 (W1, B1 one model's), rounded as the
        stock path rounds it: the product, then the sum with the bias, to W1's dtype."""
        dt = W1.dtype.element_ty
        if EVEN:
            w1 = tl.load(W1 + cols[:, None] * FF + hid[None, :])
            bias = tl.load(B1 + hid).to(tl.float32)
        else:
            w1 = tl.load(W1 + cols[:, None] * FF + hid[None, :], mask=c_ok[:, None] & h_ok[None, :], other=0.0)
            bias = tl.load(B1 + hid, mask=h_ok, other=0.0).to(tl.float32)
        return (tl.dot(x, w1).to(dt).to(tl.float32) + bias[None, :]).to(dt)

    @triton.jit
    def _fc2_chunk(acc, pre, W2, hid, h_ok, cols, c_ok, D: tl.constexpr, EVEN: tl.constexpr, HW_RCP: tl.constexpr):
        """acc plus gelu(pre) @ w2 for the hidden units `hid` (W2 one model's)."""
        if EVEN:
            w2 = tl.load(W2 + hid[:, None] * D + cols[None, :])
        else:
            w2 = tl.load(W2 + hid[:, None] * D + cols[None, :], mask=h_ok[:, None] & c_ok[None, :], other=0.0)
        z = pre.to(tl.float32)
        cdf, _ = _gelu_parts(z, HW_RCP)
        return acc + tl.dot((z * cdf).to(W2.dtype.element_ty), w2)

    @triton.jit
    def _mlp_fwd_kernel(H, W1, B1, W2, Y, PRE, N, D: tl.constexpr, FF: tl.constexpr, BD: tl.constexpr,
                        BM: tl.constexpr, BH: tl.constexpr, EVEN: tl.constexpr, STORE_PRE: tl.constexpr,
                        HW_RCP: tl.constexpr):
        pid_m = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        row0 = pid_m.to(tl.int64) * BM
        H += (k * N + row0) * D
        Y += (k * N + row0) * D
        PRE += (k * N + row0) * FF
        W1 += k * D * FF
        W2 += k * FF * D
        B1 += k * FF
        rows = tl.arange(0, BM)
        cols = tl.arange(0, BD)
        r_ok = (row0 + rows) < N
        c_ok = cols < D
        dt = Y.dtype.element_ty
        if EVEN:
            x = tl.load(H + rows[:, None] * D + cols[None, :])
        else:
            x = tl.load(H + rows[:, None] * D + cols[None, :], mask=r_ok[:, None] & c_ok[None, :], other=0.0)
        acc = tl.zeros([BM, BD], tl.float32)
        for j in range(0, FF, BH):
            hid = j + tl.arange(0, BH)
            h_ok = hid < FF
            pre = _fc1_chunk(x, W1, B1, hid, h_ok, cols, c_ok, FF, EVEN)
            if STORE_PRE:
                if EVEN:
                    tl.store(PRE + rows[:, None] * FF + hid[None, :], pre)
                else:
                    tl.store(PRE + rows[:, None] * FF + hid[None, :], pre, mask=r_ok[:, None] & h_ok[None, :])
            acc = _fc2_chunk(acc, pre, W2, hid, h_ok, cols, c_ok, D, EVEN, HW_RCP)
        if EVEN:
            tl.store(Y + rows[:, None] * D + cols[None, :], acc.to(dt))
        else:
            tl.store(Y + rows[:, None] * D + cols[None, :], acc.to(dt), mask=r_ok[:, None] & c_ok[None, :])

    @triton.jit
    def _mlp_bwd_kernel(DY, W1, W2, PRE, DH, DPRE, G, DB1P, N, D: tl.constexpr, FF: tl.constexpr,
                        BD: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr, EVEN: tl.constexpr,
                        BIAS_PARTS: tl.constexpr, SPAN: tl.constexpr, FUSE_DX: tl.constexpr,
                        HW_RCP: tl.constexpr):
        # Program (c, m, k) handles hidden units [c·SPAN, (c+1)·SPAN) of row tile m of model k; with
        # FUSE_DX (SPAN = FF) it also accumulates the input's gradient over all of them.
        j0 = tl.program_id(0) * SPAN
        pid_m = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        row0 = pid_m.to(tl.int64) * BM
        DY += (k * N + row0) * D
        DH += (k * N + row0) * D
        PRE += (k * N + row0) * FF
        DPRE += (k * N + row0) * FF
        G += (k * N + row0) * FF
        DB1P += (k * tl.num_programs(1) + pid_m) * FF
        W1 += k * D * FF
        W2 += k * FF * D
        rows = tl.arange(0, BM)
        cols = tl.arange(0, BD)
        r_ok = (row0 + rows) < N
        c_ok = cols < D
        dt = DH.dtype.element_ty
        if EVEN:
            dy = tl.load(DY + rows[:, None] * D + cols[None, :])
        else:
            dy = tl.load(DY + rows[:, None] * D + cols[None, :], mask=r_ok[:, None] & c_ok[None, :], other=0.0)
        acc = tl.zeros([BM, BD], tl.float32)
        for j in range(j0, j0 + SPAN, BH):
            hid = j + tl.arange(0, BH)
            h_ok = hid < FF
            tile = rows[:, None] * FF + hid[None, :]
            t_ok = r_ok[:, None] & h_ok[None, :]
            w_ok = h_ok[:, None] & c_ok[None, :]
            if EVEN:
                w2 = tl.load(W2 + hid[:, None] * D + cols[None, :])
                z = tl.load(PRE + tile).to(tl.float32)
            else:
                w2 = tl.load(W2 + hid[:, None] * D + cols[None, :], mask=w_ok, other=0.0)
                z = tl.load(PRE + tile, mask=t_ok, other=0.0).to(tl.float32)
            dg = tl.dot(dy, tl.trans(w2)).to(dt).to(tl.float32)
            cdf, pdf = _gelu_parts(z, HW_RCP)
            dpre = (dg * (cdf + z * pdf)).to(dt)
            # With BIAS_PARTS, this tile's share of the bias gradient (rows outside N are zeros),
            # summed over tiles later in a fixed order, so the result does not depend on scheduling.
            if EVEN:
                tl.store(DPRE + tile, dpre)
                tl.store(G + tile, (z * cdf).to(dt))
                if BIAS_PARTS:
                    tl.store(DB1P + hid, tl.sum(dpre.to(tl.float32), 0))
                if FUSE_DX:
                    w1 = tl.load(W1 + cols[:, None] * FF + hid[None, :])
            else:
                tl.store(DPRE + tile, dpre, mask=t_ok)
                tl.store(G + tile, (z * cdf).to(dt), mask=t_ok)
                if BIAS_PARTS:
                    tl.store(DB1P + hid, tl.sum(dpre.to(tl.float32), 0), mask=h_ok)
                if FUSE_DX:
                    w1 = tl.load(W1 + cols[:, None] * FF + hid[None, :], mask=c_ok[:, None] & h_ok[None, :],
                                 other=0.0)
            if FUSE_DX:
                acc += tl.dot(dpre, tl.trans(w1))
        if FUSE_DX:
            if EVEN:
                tl.store(DH + rows[:, None] * D + cols[None, :], acc.to(dt))
            else:
                tl.store(DH + rows[:, None] * D + cols[None, :], acc.to(dt), mask=r_ok[:, None] & c_ok[None, :])

    @triton.jit
    def _mlp_bwd_dw_kernel(ALIVE, DY, H, W1, B1, W2, DPRE, PART, N, D: tl.constexpr, FF: tl.constexpr,
                           BD: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr, SPAN: tl.constexpr,
                           EVEN: tl.constexpr, HW_RCP: tl.constexpr):
        # Program (c, s, k): hidden units [c·BH, (c+1)·BH) over rows [s·SPAN, (s+1)·SPAN) of model k.
        # Programs of one span differ only in c and run side by side, so h and dy come from L2
        # after the first reads them.
        c = tl.program_id(0)
        s = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        hid = c * BH + tl.arange(0, BH)
        cols = tl.arange(0, BD)
        h_ok = hid < FF
        c_ok = cols < D
        dt = DPRE.dtype.element_ty
        w1 = tl.load(W1 + k * D * FF + cols[:, None] * FF + hid[None, :], mask=c_ok[:, None] & h_ok[None, :],
                     other=0.0)
        w2 = tl.load(W2 + k * FF * D + hid[:, None] * D + cols[None, :], mask=h_ok[:, None] & c_ok[None, :],
                     other=0.0)
        b1 = tl.load(B1 + k * FF + hid, mask=h_ok, other=0.0).to(tl.float32)
        acc_w1 = tl.zeros([BD, BH], tl.float32)
        acc_w2 = tl.zeros([BH, BD], tl.float32)
        # The bias gradient's column sums as a product with ones on the tensor cores: 16 equal rows
        # (the smallest product), instead of a cross-warp reduction every iteration.
        ones = tl.full([16, BM], 1.0, dt)
        acc_b = tl.zeros([16, BH], tl.float32)
        # EVEN (every span whole, d and the hidden width multiples of the tiles): no masks, and the
        # span's rows addressed from its first, in 32 bits
        first = k * N + s.to(tl.int64) * SPAN
        for it in range(0, SPAN, BM):
            if EVEN:
                at = it + tl.arange(0, BM)
                x = tl.load(H + first * D + (at[:, None] * D + cols[None, :]))
                dy = tl.load(DY + first * D + (at[:, None] * D + cols[None, :]))
            else:
                rows = s.to(tl.int64) * SPAN + it + tl.arange(0, BM)
                r_ok = rows < N
                m = r_ok[:, None] & c_ok[None, :]
                x = tl.load(H + (k * N + rows)[:, None] * D + cols[None, :], mask=m, other=0.0)
                dy = tl.load(DY + (k * N + rows)[:, None] * D + cols[None, :], mask=m, other=0.0)
            # the forward pass's pre-activation, rounded as there
            z = (tl.dot(x, w1).to(dt).to(tl.float32) + b1[None, :]).to(dt).to(tl.float32)
            cdf, pdf = _gelu_parts(z, HW_RCP)
            dg = tl.dot(dy, tl.trans(w2)).to(dt).to(tl.float32)
            dpre = (dg * (cdf + z * pdf)).to(dt)  # rows outside N: dy = 0, so dpre = 0
            if EVEN:
                tl.store(DPRE + first * FF + (at[:, None] * FF + hid[None, :]), dpre)
            else:
                tl.store(DPRE + (k * N + rows)[:, None] * FF + hid[None, :], dpre, mask=r_ok[:, None] & h_ok[None, :])
            acc_w1 += tl.dot(tl.trans(x), dpre)
            acc_w2 += tl.dot(tl.trans((z * cdf).to(dt)), dy)
            acc_b += tl.dot(ones, dpre)
        # this program's share of dw1 (BD x FF), dw2 (FF x BD) and db1 (FF) in its span's partial sums
        PART += (k * tl.num_programs(1) + s) * (2 * BD + 1) * FF
        tl.store(PART + cols[:, None] * FF + hid[None, :], acc_w1, mask=c_ok[:, None] & h_ok[None, :])
        tl.store(PART + BD * FF + hid[:, None] * BD + cols[None, :], acc_w2, mask=h_ok[:, None] & c_ok[None, :])
        tl.store(PART + 2 * BD * FF + hid, tl.max(acc_b, 0), mask=h_ok)  # its rows are equal


def _check(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[int, int, int, int]:
    kk, n, d = h.shape
    f = w1.shape[-1]
    if w1.shape != (kk, d, f) or b1.shape != (kk, f) or w2.shape != (kk, f, d):
        raise ValueError(f"MLP shapes do not match: h {tuple(h.shape)}, w1 {tuple(w1.shape)}, "
                         f"b1 {tuple(b1.shape)}, w2 {tuple(w2.shape)}")
    return kk, n, d, f


def gelu_rcp() -> bool:
    """Whether the kernels take GELU's 1 / (1 + p|z|) as the bare hardware reciprocal (`_recip`):
    always, but in Triton's interpreter (no inline PTX) or with PYPHASE_GELU_RCP=div (the division
    as before, for benches/profile_step.py's A/B; the same bits, 7 more instructions an element)."""
    return not kernels.interpreted() and os.environ.get("PYPHASE_GELU_RCP", "").lower() != "div"


def _launch(kind: str, n: int, d: int, f: int, kk: int,
            cfg: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], dict[str, int]]:
    """Grid and launch parameters: one program per tile of rows and model (and, for the split
    backward pass, per hidden chunk; for the "dw" backward pass, one per hidden chunk and span of
    rows); the hidden chunk shrinks to the next power of two at or above 16 when the hidden width is
    smaller. `cfg` in place of CONFIG[kind]: another kernel's launch with the same tiles
    (`pyphase.mlp_block`'s forward)."""
    cfg = CONFIG[kind] if cfg is None else cfg
    assert isinstance(cfg, tuple)
    bm, bh, warps, stages = cfg[:4]
    bh = min(bh, pad_width(f))
    bd = pad_width(d)
    even = kernels.unmasked(n % bm == 0 and d == bd and f % bh == 0)  # no tile needs masks
    meta = dict(BD=bd, BM=bm, BH=bh, EVEN=even, HW_RCP=gelu_rcp(), num_warps=warps, num_stages=stages)
    if kind == "fwd":
        return (triton.cdiv(n, bm), kk), meta
    if CONFIG["bwd_mode"] == "dw":
        # SPAN: rows per program, a multiple of the tile, at most cfg[4], fewer (down to MIN_SPAN)
        # where that leaves fewer than kernels.BACKWARD_PROGRAMS programs in a pack of
        # kernels.PARTIALS_PACK models (not kk: the span sets the weight gradients' summation order)
        spans = triton.cdiv(kernels.BACKWARD_PROGRAMS, triton.cdiv(f, bh) * kernels.PARTIALS_PACK)
        most = triton.cdiv(cfg[4] if len(cfg) > 4 else 4096, bm)
        span = min(most, max(triton.cdiv(n, bm * spans), triton.cdiv(MIN_SPAN, bm))) * bm
        meta = dict(BD=bd, BM=bm, BH=bh, SPAN=span, EVEN=even and n % span == 0, HW_RCP=meta["HW_RCP"],
                    num_warps=warps, num_stages=stages)
        return (triton.cdiv(f, bh), triton.cdiv(n, span), kk), meta
    split = CONFIG["bwd_mode"] == "split"
    span = bh if split else triton.cdiv(f, bh) * bh
    meta.update(BIAS_PARTS=bool(cfg[4]) if len(cfg) > 4 else True, SPAN=span, FUSE_DX=not split)
    return (triton.cdiv(f, span), triton.cdiv(n, bm), kk), meta


@torch.library.custom_op("pyphase::gelu_mlp_fwd", mutates_args=())
def _mlp_fwd(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """→ output (K, N, d) and the pre-activation (K, N, f) saved for the backward pass."""
    h, w1, b1, w2 = (z.contiguous() for z in (h, w1, b1, w2))
    kk, n, d, f = _check(h, w1, b1, w2)
    y = h.new_empty(kk, n, d)
    store_pre = CONFIG["bwd_mode"] != "dw"  # "dw" recomputes it in the backward pass
    pre = h.new_empty(kk, n, f) if store_pre else h.new_empty(0)
    grid, meta = _launch("fwd", n, d, f, kk)
    LAST["fwd"] = launch(_mlp_fwd_kernel, grid)(h, w1, b1, w2, y, pre, n, d, f, STORE_PRE=store_pre, **meta)
    return y, pre


@_mlp_fwd.register_fake
def _(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    kk, n, d, f = _check(h, w1, b1, w2)
    return h.new_empty(kk, n, d), (h.new_empty(kk, n, f) if CONFIG["bwd_mode"] != "dw" else h.new_empty(0))


@torch.library.custom_op("pyphase::gelu_mlp_bwd", mutates_args=())
def _mlp_bwd(dy: Tensor, h: Tensor, w1: Tensor, w2: Tensor, pre: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """→ gradients w.r.t. h, w1, b1 (fp32), w2."""
    dy, h, w1, w2, pre = (z.contiguous() for z in (dy, h, w1, w2, pre))
    kk, n, d = h.shape
    f = w1.shape[-1]
    grid, meta = _launch("bwd", n, d, f, kk)
    dh = torch.empty_like(h)
    dpre = torch.empty_like(pre)
    g = torch.empty_like(pre)
    parts = torch.empty(kk, grid[1] if meta["BIAS_PARTS"] else 0, f, device=h.device, dtype=torch.float32)
    LAST["bwd"] = launch(_mlp_bwd_kernel, grid)(dy, w1, w2, pre, dh, dpre, g, parts, n, d, f, **meta)
    if not meta["FUSE_DX"]:
        torch.bmm(dpre, w1.transpose(1, 2), out=dh)
    dw1 = torch.bmm(h.transpose(1, 2), dpre)
    dw2 = torch.bmm(g.transpose(1, 2), dy)
    db1 = sum_parts(parts) if meta["BIAS_PARTS"] else dpre.sum(dim=1, dtype=torch.float32)
    return dh, dw1, db1, dw2


@_mlp_bwd.register_fake
def _(dy: Tensor, h: Tensor, w1: Tensor, w2: Tensor, pre: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (torch.empty_like(h), torch.empty_like(w1), w1.new_empty(w1.shape[0], w1.shape[2], dtype=torch.float32),
            torch.empty_like(w2))


@torch.library.custom_op("pyphase::gelu_mlp_bwd_dw", mutates_args=())
def _mlp_bwd_dw(dy: Tensor, h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward pass of bwd_mode "dw" → gradients w.r.t. h, w1, b1 (fp32), w2 (see CONFIG)."""
    dy, h, w1, b1, w2 = (z.contiguous() for z in (dy, h, w1, b1, w2))
    kk, n, d, f = _check(h, w1, b1, w2)
    grid, meta = _launch("bwd", n, d, f, kk)
    bd = meta["BD"]
    dpre = h.new_empty(kk, n, f)
    parts = torch.empty(kk, grid[1], (2 * bd + 1) * f, device=h.device, dtype=torch.float32)
    LAST["bwd"] = launch(_mlp_bwd_dw_kernel, grid)(alive_mask(kk, h.device), dy, h, w1, b1, w2, dpre, parts, n, d, f, **meta)
    sums = sum_parts(parts)
    dw1 = sums[:, : bd * f].view(kk, bd, f)[:, :d].to(w1.dtype, copy=True)  # copies: outputs must not alias
    dw2 = sums[:, bd * f : 2 * bd * f].view(kk, f, bd)[..., :d].to(w2.dtype, copy=True)
    db1 = sums[:, 2 * bd * f :].clone()
    return torch.bmm(dpre, w1.transpose(1, 2)), dw1, db1, dw2


@_mlp_bwd_dw.register_fake
def _(dy: Tensor, h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (torch.empty_like(h), torch.empty_like(w1), w1.new_empty(w1.shape[0], w1.shape[2], dtype=torch.float32),
            torch.empty_like(w2))


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    h, w1, b1, w2 = inputs
    ctx.save_for_backward(h, w1, b1, w2, output[1])
    ctx.b1_dtype = b1.dtype
    ctx.mode = CONFIG["bwd_mode"]


def _mlp_bwd_torch(dy: Tensor, h: Tensor, w1: Tensor, w2: Tensor, pre: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`_mlp_bwd` as torch ops (the same roundings), for the compiler to fuse."""
    z = pre.float()
    cdf = 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))
    pdf = torch.exp(-0.5 * z * z) * 0.3989422804014327
    g = (z * cdf).to(pre.dtype)
    dg = torch.bmm(dy, w2.transpose(1, 2))
    dpre = (dg.float() * (cdf + z * pdf)).to(pre.dtype)
    return (torch.bmm(dpre, w1.transpose(1, 2)), torch.bmm(h.transpose(1, 2), dpre), dpre.float().sum(dim=1),
            torch.bmm(g.transpose(1, 2), dy))


def _backward(ctx, dy: Tensor, _dpre: Tensor):  # type: ignore[no-untyped-def]
    h, w1, b1, w2, pre = ctx.saved_tensors
    if dy is None:  # the output was not used
        return None, None, None, None
    if ctx.mode == "dw":
        dh, dw1, db1, dw2 = backward_op(ctx, _mlp_bwd_dw)(dy, h, w1, b1, w2)
    else:
        bwd = _mlp_bwd_torch if ctx.mode == "torch" else backward_op(ctx, _mlp_bwd)
        dh, dw1, db1, dw2 = bwd(dy, h, w1, w2, pre)
    return dh, dw1, db1.to(ctx.b1_dtype), dw2


register_autograd(_mlp_fwd, _backward, _setup)


def gelu_mlp(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, use_triton: bool | None = None) -> Tensor:
    """gelu(h @ w1 + b1) @ w2 for K models: h (K, N, d), w1 (K, d, f), b1 (K, f), w2 (K, f, d).
    Under autocast the operands are cast to its dtype, as torch.bmm would. Triton kernels where
    `supported` or when `use_triton` forces them, else the stock path."""
    h, w1, b1, w2 = autocast_operands(h.device.type, h, w1, b1, w2)
    if use_triton if use_triton is not None else supported(h, w1):
        return call(_mlp_fwd, h, w1, b1.to(h.dtype), w2)[0]
    return gelu_mlp_reference(h, w1, b1, w2)
