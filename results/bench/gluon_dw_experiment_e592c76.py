"""Experiment: the MLP "dw" backward kernel written in Gluon (Triton's explicit-layout dialect) for
Hopper: every product on asynchronous warpgroup MMA, tiles brought in by cp.async into a ring of
shared-memory buffers. Same tiles and program grid as pyphase.mlp's `_mlp_bwd_dw_kernel`, so that
the outputs can be compared bit for bit.

    python3 .dev/gluon_dw.py compile          # compile for sm_90 here (no GPU), print registers/smem
    python3 .dev/gluon_dw.py bench            # on the H100: bits and time against pyphase's kernel
"""
from __future__ import annotations

import sys

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, warpgroup_mma, warpgroup_mma_init,
                                                              warpgroup_mma_wait)


@gluon.jit
def _gelu_parts(z):
    e = gl.exp2(z * z * -0.7213475204444817)
    t = 1.0 / (1.0 + 0.23164188826636 * gl.abs(z))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    half_erfc = 0.5 * poly * e
    cdf = gl.where(z >= 0, 1.0 - half_erfc, half_erfc)
    return cdf, e * 0.3989422804014327


@gluon.jit
def _issue_tile(x_s, dy_s, H, DY, row0, slot, rows_ld, cols_ld, D: gl.constexpr):
    off = (row0 + rows_ld)[:, None] * D + cols_ld[None, :]
    cp.async_copy_global_to_shared(x_s.index(slot), H + off)
    cp.async_copy_global_to_shared(dy_s.index(slot), DY + off)


@gluon.jit
def dw_kernel(ALIVE, DY, H, W1, B1, W2, DPRE, PART, N, D: gl.constexpr, FF: gl.constexpr,
              BM: gl.constexpr, BH: gl.constexpr, SPAN: gl.constexpr, STAGES: gl.constexpr,
              ld_t: gl.constexpr, ld_w: gl.constexpr, mma: gl.constexpr, EW_BIAS: gl.constexpr,
              ma: gl.constexpr = None, ABL: gl.constexpr = 0, ONES_REG: gl.constexpr = False):
    c = gl.program_id(0)
    s = gl.program_id(1)
    k = gl.program_id(2).to(gl.int64)
    if gl.load(ALIVE + k) == 0:
        return
    dt: gl.constexpr = DPRE.dtype.element_ty
    H += k * N * D
    DY += k * N * D
    DPRE += k * N * FF
    W1 += k * D * FF
    W2 += k * FF * D
    B1 += k * FF

    # shared layouts
    t_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, D], dt)
    w1_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([D, BH], dt)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BH, D], dt)
    p_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, BH], dt)
    o_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, BM], dt)

    x_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    dy_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)

    rows_ld = gl.arange(0, BM, layout=gl.SliceLayout(1, ld_t))
    cols_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_t))
    row_base = s.to(gl.int64) * SPAN
    n_it: gl.constexpr = SPAN // BM
    for j in gl.static_range(STAGES - 1):
        _issue_tile(x_s, dy_s, H, DY, row_base + j * BM, j, rows_ld, cols_ld, D)
        cp.commit_group()

    hid0 = c * BH
    # this chunk's weights, once
    wr = gl.arange(0, D, layout=gl.SliceLayout(1, ld_w))
    wc = gl.arange(0, BH, layout=gl.SliceLayout(0, ld_w))
    w1 = gl.load(W1 + wr[:, None] * FF + hid0 + wc[None, :])
    w1_s = gl.allocate_shared_memory(dt, [D, BH], w1_sl, w1)
    w2 = gl.load(W2 + (hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, ld_t)))[:, None] * D + cols_ld[None, :])
    w2_s = gl.allocate_shared_memory(dt, [BH, D], w2_sl, w2)
    if ONES_REG:
        ones_s = gl.full([BM, BM], 1.0, dt, gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2))
    elif not EW_BIAS:
        ones_s = gl.allocate_shared_memory(dt, [BM, BM], o_sl, gl.full([BM, BM], 1.0, dt, ld_t))
    dpre_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)
    g_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)

    hid_m = hid0 + gl.arange(0, BH, layout=gl.SliceLayout(0, mma))
    rows_m = gl.arange(0, BM, layout=gl.SliceLayout(1, mma))
    b1 = gl.load(B1 + hid_m).to(gl.float32)

    zero = gl.zeros([BM, BH], gl.float32, mma)
    acc_w1 = warpgroup_mma_init(gl.zeros([D, BH], gl.float32, ma))
    acc_w2 = warpgroup_mma_init(gl.zeros([D, BH], gl.float32, ma))   # dw2's chunk transposed: dy^T @ g
    if EW_BIAS:  # elementwise fp32 sums of dpre, rows summed at the end (not pyphase's bits)
        acc_b = gl.zeros([BM, BH], gl.float32, mma)
    else:  # equal rows: the column sums of dpre
        acc_b = warpgroup_mma_init(gl.zeros([BM, BH], gl.float32, mma))
    if ABL == 2:
        acc_w1 = gl.zeros([D, BH], gl.float32, ma)
        acc_w2 = gl.zeros([D, BH], gl.float32, ma)
    fence_async_shared()
    gl.thread_barrier()

    for i in range(n_it):
        slot = i % STAGES
        cp.wait_group(STAGES - 2)
        gl.thread_barrier()
        fence_async_shared()
        xi = x_s.index(slot)
        dyi = dy_s.index(slot)
        if ABL == 4:
            z = warpgroup_mma_init(zero)
            dg = warpgroup_mma_init(zero)
        else:
            z = warpgroup_mma(xi, w1_s, zero, use_acc=False, is_async=True)
            dg = warpgroup_mma(dyi, w2_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        if ABL == 2:
            if EW_BIAS:
                z, dg = warpgroup_mma_wait(0, deps=[z, dg])
            else:
                acc_b, z, dg = warpgroup_mma_wait(0, deps=[acc_b, z, dg])
        elif EW_BIAS:
            acc_w1, acc_w2, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, z, dg])
        else:
            acc_w1, acc_w2, acc_b, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b, z, dg])
        # the slot of tile i - 1 is free now: bring in tile i + STAGES - 1 (past the span: tile 0 again, unused)
        nxt = i + STAGES - 1
        if nxt < n_it:
            _issue_tile(x_s, dy_s, H, DY, row_base + nxt * BM, nxt % STAGES, rows_ld, cols_ld, D)
        cp.commit_group()

        if ABL == 1:
            dpre = dg.to(dt)
            g = z.to(dt)
        else:
            z = (z.to(dt).to(gl.float32) + b1[None, :]).to(dt).to(gl.float32)
            cdf, pdf = _gelu_parts(z)
            dgr = dg.to(dt).to(gl.float32)
            dpre = (dgr * (cdf + z * pdf)).to(dt)
            g = (z * cdf).to(dt)
        dpre_s.store(dpre)
        g_s.store(g)
        if ABL != 3:
            gl.store(DPRE + (row_base + i * BM + rows_m)[:, None] * FF + hid_m[None, :], dpre)
        fence_async_shared()
        gl.thread_barrier()
        if ABL != 2:
            acc_w1 = warpgroup_mma(xi.permute((1, 0)), dpre_s, acc_w1, is_async=True)
            acc_w2 = warpgroup_mma(dyi.permute((1, 0)), g_s, acc_w2, is_async=True)
        if EW_BIAS:
            acc_b += dpre.to(gl.float32)
        else:
            acc_b = warpgroup_mma(ones_s, dpre_s, acc_b, is_async=True)
    cp.wait_group(0)  # before any scratch (the reductions') can reuse the ring
    if ABL == 2:
        if EW_BIAS:
            bsum = gl.sum(acc_b, 0)
        else:
            acc_b = warpgroup_mma_wait(0, deps=[acc_b])
            bsum = gl.max(acc_b, 0)
    elif EW_BIAS:
        acc_w1, acc_w2 = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2])
        bsum = gl.sum(acc_b, 0)
    else:
        acc_w1, acc_w2, acc_b = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b])
        bsum = gl.max(acc_b, 0)

    PART += (k * gl.num_programs(1) + s) * (2 * D + 1) * FF
    cols_a = gl.arange(0, D, layout=gl.SliceLayout(1, ma))
    hid_a = hid0 + gl.arange(0, BH, layout=gl.SliceLayout(0, ma))
    gl.store(PART + cols_a[:, None] * FF + hid_a[None, :], acc_w1)
    gl.store(PART + D * FF + hid_a[None, :] * D + cols_a[:, None], acc_w2)
    gl.store(PART + 2 * D * FF + hid_m, bsum)


SIG = {"ALIVE": "*i1", "DY": "*bf16", "H": "*bf16", "W1": "*bf16", "B1": "*bf16", "W2": "*bf16", "DPRE": "*bf16",
       "PART": "*fp32", "N": "i32", "D": "constexpr", "FF": "constexpr", "BM": "constexpr", "BH": "constexpr",
       "SPAN": "constexpr", "STAGES": "constexpr", "ld_t": "constexpr", "ld_w": "constexpr", "mma": "constexpr",
       "EW_BIAS": "constexpr", "ma": "constexpr", "ABL": "constexpr", "ONES_REG": "constexpr"}


def layouts(warps: int, bh: int) -> dict:
    """Register layouts for `warps` warps: tile loads [BM, D] (and w2's [BH, D] chunk), w1's [D, BH]
    chunk, and the warpgroup MMA's accumulators (warpgroups side by side along the hidden units)."""
    wg = warps // 4
    return dict(ld_t=gl.BlockedLayout([1, 8], [2, 16], [warps, 1], [1, 0]),
                ld_w=gl.BlockedLayout([1, 8], [32 // (bh // 8), bh // 8], [warps, 1], [1, 0]),
                mma=gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, wg], instr_shape=[16, bh // wg, 16]),
                # the [D, BH] accumulators: warpgroups stacked along the model width (no operand read twice)
                ma=gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[min(warps, 8), max(1, warps // 8)],
                                             instr_shape=[16, bh // max(1, warps // 8), 16]))


def compile_local(stages: int = 2, warps: int = 4, bh: int = 32, ew_bias: bool = False, abl: int = 0, ones_reg: bool = False):
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    consts = {"D": 128, "FF": 512, "BM": 64, "BH": bh, "SPAN": 4096, "STAGES": stages, "EW_BIAS": ew_bias, "ABL": abl, "ONES_REG": ones_reg,
              **layouts(warps, bh)}
    attrs = {(list(SIG).index(a),): [["tt.divisibility", 16]] for a in ("DY", "H", "W1", "B1", "W2", "DPRE", "PART")}
    src = GluonASTSource(dw_kernel, SIG, consts, attrs)
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    import subprocess, os, tempfile
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        open(f"{tmp}/k.ptx", "w").write(ck.asm["ptx"])
        out = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f"{tmp}/k.ptx", "-o", f"{tmp}/k.cubin"],
                             capture_output=True, text=True).stderr
    regs = [l.split("Used")[1].strip() for l in out.splitlines() if "Used" in l]
    spill = [l.strip() for l in out.splitlines() if "spill" in l]
    print(f"stages {stages} warps {warps} BH {bh} ew_bias {ew_bias} abl {abl} ones_reg {ones_reg}: shared {ck.metadata.shared}, {regs}, {spill}")
    return ck


if __name__ == "__main__":
    if sys.argv[1] == "compile":
        for args in [(2, 4, 32, False), (2, 4, 32, True), (2, 4, 32, False, 0, True)] + [(2, 4, 32, True, a) for a in (1, 2, 3, 4)]:
            ck = compile_local(*args)


@gluon.jit
def _issue_tile32(x_s, dy_s, Hb, DYb, off, slot):
    cp.async_copy_global_to_shared(x_s.index(slot), Hb + off)
    cp.async_copy_global_to_shared(dy_s.index(slot), DYb + off)
    cp.commit_group()


@gluon.jit
def dw_kernel_t(ALIVE, DY, H, W1, B1, W2, DPRE, PART, N, D: gl.constexpr, FF: gl.constexpr,
                BM: gl.constexpr, BH: gl.constexpr, SPAN: gl.constexpr, STAGES: gl.constexpr,
                ld_t: gl.constexpr, ld_w: gl.constexpr, ml: gl.constexpr, ma: gl.constexpr, mb: gl.constexpr):
    """Weight-gradient accumulators transposed: hidden units x model width (dW1^T and dW2), so their
    products are dpre^T @ x and g^T @ dy with the row tiles as the B operand, N = d."""
    c = gl.program_id(0)
    s = gl.program_id(1)
    k = gl.program_id(2).to(gl.int64)
    if gl.load(ALIVE + k) == 0:
        return
    dt: gl.constexpr = DPRE.dtype.element_ty
    row_base = s.to(gl.int64) * SPAN
    H += (k * N + row_base) * D
    DY += (k * N + row_base) * D
    DPRE += (k * N + row_base) * FF
    W1 += k * D * FF
    W2 += k * FF * D
    B1 += k * FF
    hid0 = c * BH

    t_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, D], dt)
    w1_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([D, BH], dt)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BH, D], dt)
    p_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, BH], dt)
    o_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, 16], dt)

    x_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    dy_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    rows_ld = gl.arange(0, BM, layout=gl.SliceLayout(1, ld_t))
    cols_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_t))
    off = rows_ld[:, None] * D + cols_ld[None, :]
    n_it: gl.constexpr = SPAN // BM
    for j in gl.static_range(STAGES - 1):
        _issue_tile32(x_s, dy_s, H + j * BM * D, DY + j * BM * D, off, j)

    wr = gl.arange(0, D, layout=gl.SliceLayout(1, ld_w))
    wc = gl.arange(0, BH, layout=gl.SliceLayout(0, ld_w))
    w1_s = gl.allocate_shared_memory(dt, [D, BH], w1_sl, gl.load(W1 + wr[:, None] * FF + hid0 + wc[None, :]))
    w2r = gl.arange(0, BH, layout=gl.SliceLayout(1, ld_t))
    w2_s = gl.allocate_shared_memory(dt, [BH, D], w2_sl, gl.load(W2 + (hid0 + w2r)[:, None] * D + cols_ld[None, :]))
    ones_s = gl.allocate_shared_memory(dt, [BM, 16], o_sl, gl.full([BM, 16], 1.0, dt, ld_w))
    dpre_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)
    g_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)

    hid_l = gl.arange(0, BH, layout=gl.SliceLayout(0, ml))
    rows_l = gl.arange(0, BM, layout=gl.SliceLayout(1, ml))
    off_p = rows_l[:, None] * FF + (hid0 + hid_l)[None, :]
    b1 = gl.load(B1 + hid0 + hid_l).to(gl.float32)

    zero = gl.zeros([BM, BH], gl.float32, ml)
    acc_w1 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW1^T chunk
    acc_w2 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW2 chunk
    acc_b = warpgroup_mma_init(gl.zeros([BH, 16], gl.float32, mb))  # equal columns: db1
    fence_async_shared()
    gl.thread_barrier()

    for i in range(n_it):
        slot = i % STAGES
        cp.wait_group(STAGES - 2)
        gl.thread_barrier()
        fence_async_shared()
        xi = x_s.index(slot)
        dyi = dy_s.index(slot)
        z = warpgroup_mma(xi, w1_s, zero, use_acc=False, is_async=True)
        dg = warpgroup_mma(dyi, w2_s.permute((1, 0)), zero, use_acc=False, is_async=True)
        acc_w1, acc_w2, acc_b, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b, z, dg])
        nxt = i + STAGES - 1
        nxt = gl.where(nxt < n_it, nxt, 0)
        _issue_tile32(x_s, dy_s, H + nxt * BM * D, DY + nxt * BM * D, off, (i + STAGES - 1) % STAGES)

        z = (z.to(dt).to(gl.float32) + b1[None, :]).to(dt).to(gl.float32)
        cdf, pdf = _gelu_parts(z)
        dgr = dg.to(dt).to(gl.float32)
        dpre = (dgr * (cdf + z * pdf)).to(dt)
        g = (z * cdf).to(dt)
        dpre_s.store(dpre)
        g_s.store(g)
        gl.store(DPRE + i * BM * FF + off_p, dpre)
        fence_async_shared()
        gl.thread_barrier()
        dpt = dpre_s.permute((1, 0))
        acc_w1 = warpgroup_mma(dpt, xi, acc_w1, is_async=True)
        acc_w2 = warpgroup_mma(g_s.permute((1, 0)), dyi, acc_w2, is_async=True)
        acc_b = warpgroup_mma(dpt, ones_s, acc_b, is_async=True)
    acc_w1, acc_w2, acc_b = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b])
    cp.wait_group(0)

    PART += (k * gl.num_programs(1) + s) * (2 * D + 1) * FF
    hid_a = hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, ma))
    cols_a = gl.arange(0, D, layout=gl.SliceLayout(0, ma))
    gl.store(PART + cols_a[None, :] * FF + hid_a[:, None], acc_w1)
    gl.store(PART + D * FF + hid_a[:, None] * D + cols_a[None, :], acc_w2)
    gl.store(PART + 2 * D * FF + hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, mb)), gl.max(acc_b, 1))


SIG_T = {"ALIVE": "*i1", "DY": "*bf16", "H": "*bf16", "W1": "*bf16", "B1": "*bf16", "W2": "*bf16", "DPRE": "*bf16",
         "PART": "*fp32", "N": "i32", "D": "constexpr", "FF": "constexpr", "BM": "constexpr", "BH": "constexpr",
         "SPAN": "constexpr", "STAGES": "constexpr", "ld_t": "constexpr", "ld_w": "constexpr", "ml": "constexpr",
         "ma": "constexpr", "mb": "constexpr"}


def layouts_t(warps: int, bh: int) -> dict:
    wg = warps // 4
    mma = lambda n: gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, wg], instr_shape=[16, n // wg, 16])
    return dict(ld_t=gl.BlockedLayout([1, 8], [2, 16], [warps, 1], [1, 0]),
                ld_w=gl.BlockedLayout([1, 8], [32 // (bh // 8), bh // 8], [warps, 1], [1, 0]),
                ml=mma(bh), ma=mma(128), mb=mma(16))


def compile_local_t(stages: int = 2, warps: int = 4, bh: int = 64):
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    import subprocess, os, tempfile
    consts = {"D": 128, "FF": 512, "BM": 64, "BH": bh, "SPAN": 4096, "STAGES": stages, **layouts_t(warps, bh)}
    attrs = {(list(SIG_T).index(a),): [["tt.divisibility", 16]] for a in ("DY", "H", "W1", "B1", "W2", "DPRE", "PART")}
    ck = triton.compile(GluonASTSource(dw_kernel_t, SIG_T, consts, attrs), target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": warps})
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        open(f"{tmp}/k.ptx", "w").write(ck.asm["ptx"])
        out = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f"{tmp}/k.ptx", "-o", f"{tmp}/k.cubin"],
                             capture_output=True, text=True).stderr
    print(f"T stages {stages} warps {warps} BH {bh}: shared {ck.metadata.shared},",
          [l.split("Used")[1].strip() for l in out.splitlines() if "Used" in l],
          [l.strip() for l in out.splitlines() if "spill" in l])
    return ck


@gluon.jit
def dw_kernel_h(ALIVE, DY, H, W1, B1, W2, DPRE, PART, N, D: gl.constexpr, FF: gl.constexpr,
                BM: gl.constexpr, BH: gl.constexpr, SPAN: gl.constexpr, STAGES: gl.constexpr,
                ld_t: gl.constexpr, ld_w: gl.constexpr, ml: gl.constexpr, ma: gl.constexpr, mb: gl.constexpr,
                NB: gl.constexpr, EW_BIAS: gl.constexpr):
    """dw_kernel_t with one warpgroup and BH = 64: the pre-activation and dy @ w2^T in two halves of
    32 hidden units each (fewer live registers), the accumulators dW1^T and dW2 (hidden x width)."""
    HB: gl.constexpr = BH // 2
    c = gl.program_id(0)
    s = gl.program_id(1)
    k = gl.program_id(2).to(gl.int64)
    if gl.load(ALIVE + k) == 0:
        return
    dt: gl.constexpr = DPRE.dtype.element_ty
    row_base = s.to(gl.int64) * SPAN
    H += (k * N + row_base) * D
    DY += (k * N + row_base) * D
    DPRE += (k * N + row_base) * FF
    W1 += k * D * FF
    W2 += k * FF * D
    B1 += k * FF
    hid0 = c * BH

    t_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, D], dt)
    w1_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([D, HB], dt)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BH, D], dt)
    p_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, BH], dt)
    o_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, NB], dt)

    x_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    dy_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    rows_ld = gl.arange(0, BM, layout=gl.SliceLayout(1, ld_t))
    cols_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_t))
    off = rows_ld[:, None] * D + cols_ld[None, :]
    n_it: gl.constexpr = SPAN // BM
    for j in gl.static_range(STAGES - 1):
        cp.async_copy_global_to_shared(x_s.index(j), H + j * BM * D + off)
        cp.async_copy_global_to_shared(dy_s.index(j), DY + j * BM * D + off)
        cp.commit_group()

    wr = gl.arange(0, D, layout=gl.SliceLayout(1, ld_w))
    wc = gl.arange(0, HB, layout=gl.SliceLayout(0, ld_w))
    w1a_s = gl.allocate_shared_memory(dt, [D, HB], w1_sl, gl.load(W1 + wr[:, None] * FF + hid0 + wc[None, :]))
    w1b_s = gl.allocate_shared_memory(dt, [D, HB], w1_sl, gl.load(W1 + wr[:, None] * FF + hid0 + HB + wc[None, :]))
    w2r = gl.arange(0, BH, layout=gl.SliceLayout(1, ld_t))
    w2_s = gl.allocate_shared_memory(dt, [BH, D], w2_sl, gl.load(W2 + (hid0 + w2r)[:, None] * D + cols_ld[None, :]))
    if not EW_BIAS:
        ones_s = gl.allocate_shared_memory(dt, [BM, NB], o_sl, gl.full([BM, NB], 1.0, dt, ld_w))
    dpre_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)
    g_s = gl.allocate_shared_memory(dt, [BM, BH], p_sl)

    hid_l = gl.arange(0, HB, layout=gl.SliceLayout(0, ml))
    rows_l = gl.arange(0, BM, layout=gl.SliceLayout(1, ml))
    off_p = rows_l[:, None] * FF + (hid0 + hid_l)[None, :]
    b1a = gl.load(B1 + hid0 + hid_l).to(gl.float32)
    b1b = gl.load(B1 + hid0 + HB + hid_l).to(gl.float32)

    zero = gl.zeros([BM, HB], gl.float32, ml)
    acc_w1 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW1^T chunk
    acc_w2 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW2 chunk
    if EW_BIAS:
        acc_ba = gl.zeros([BM, HB], gl.float32, ml)
        acc_bb = gl.zeros([BM, HB], gl.float32, ml)
    else:
        acc_b = warpgroup_mma_init(gl.zeros([BH, NB], gl.float32, mb))  # equal columns: db1
    fence_async_shared()
    gl.thread_barrier()

    for i in range(n_it):
        slot = i % STAGES
        cp.wait_group(STAGES - 2)
        gl.thread_barrier()
        fence_async_shared()
        xi = x_s.index(slot)
        dyi = dy_s.index(slot)
        for hf in gl.static_range(2):
            if hf == 0:
                z = warpgroup_mma(xi, w1a_s, zero, use_acc=False, is_async=True)
            else:
                z = warpgroup_mma(xi, w1b_s, zero, use_acc=False, is_async=True)
            dg = warpgroup_mma(dyi, w2_s.slice(hf * HB, HB, dim=0).permute((1, 0)), zero, use_acc=False,
                               is_async=True)
            if hf == 0:
                if EW_BIAS:
                    acc_w1, acc_w2, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, z, dg])
                else:
                    acc_w1, acc_w2, acc_b, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b, z, dg])
                nxt = i + STAGES - 1
                if nxt < n_it:
                    cp.async_copy_global_to_shared(x_s.index(nxt % STAGES), H + nxt * BM * D + off)
                    cp.async_copy_global_to_shared(dy_s.index(nxt % STAGES), DY + nxt * BM * D + off)
                cp.commit_group()
                bias = b1a
            else:
                z, dg = warpgroup_mma_wait(0, deps=[z, dg])
                bias = b1b
            zz = (z.to(dt).to(gl.float32) + bias[None, :]).to(dt).to(gl.float32)
            cdf, pdf = _gelu_parts(zz)
            dpre = (dg.to(dt).to(gl.float32) * (cdf + zz * pdf)).to(dt)
            dpre_s.slice(hf * HB, HB, dim=1).store(dpre)
            g_s.slice(hf * HB, HB, dim=1).store((zz * cdf).to(dt))
            gl.store(DPRE + i * BM * FF + hf * HB + off_p, dpre)
            if EW_BIAS:
                if hf == 0:
                    acc_ba += dpre.to(gl.float32)
                else:
                    acc_bb += dpre.to(gl.float32)
        fence_async_shared()
        gl.thread_barrier()
        dpt = dpre_s.permute((1, 0))
        acc_w1 = warpgroup_mma(dpt, xi, acc_w1, is_async=True)
        acc_w2 = warpgroup_mma(g_s.permute((1, 0)), dyi, acc_w2, is_async=True)
        if not EW_BIAS:
            acc_b = warpgroup_mma(dpt, ones_s, acc_b, is_async=True)
    cp.wait_group(0)
    PART += (k * gl.num_programs(1) + s) * (2 * D + 1) * FF
    if EW_BIAS:
        acc_w1, acc_w2 = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2])
        hid_s = hid0 + gl.arange(0, HB, layout=gl.SliceLayout(0, ml))
        gl.store(PART + 2 * D * FF + hid_s, gl.sum(acc_ba, 0))
        gl.store(PART + 2 * D * FF + HB + hid_s, gl.sum(acc_bb, 0))
    else:
        acc_w1, acc_w2, acc_b = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b])
        gl.store(PART + 2 * D * FF + hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, mb)), gl.max(acc_b, 1))
    hid_a = hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, ma))
    cols_a = gl.arange(0, D, layout=gl.SliceLayout(0, ma))
    gl.store(PART + cols_a[None, :] * FF + hid_a[:, None], acc_w1)
    gl.store(PART + D * FF + hid_a[:, None] * D + cols_a[None, :], acc_w2)


SIG_H = dict(SIG_T, NB="constexpr", EW_BIAS="constexpr")


def layouts_h(warps: int, bh: int, nb: int) -> dict:
    mma = lambda n: gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[warps, 1], instr_shape=[16, n, 16])
    return dict(ld_t=gl.BlockedLayout([1, 8], [2, 16], [warps, 1], [1, 0]),
                ld_w=gl.BlockedLayout([1, 8], [8, 4], [warps, 1], [1, 0]),
                ml=mma(bh // 2), ma=mma(128), mb=mma(nb))


def compile_local_h(stages: int = 2, warps: int = 4, bh: int = 64, nb: int = 8, ew: bool = False):
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    import subprocess, os, tempfile
    consts = {"D": 128, "FF": 512, "BM": 64, "BH": bh, "SPAN": 4096, "STAGES": stages, "NB": nb, "EW_BIAS": ew,
              **layouts_h(warps, bh, nb)}
    attrs = {(list(SIG_H).index(a),): [["tt.divisibility", 16]] for a in ("DY", "H", "W1", "B1", "W2", "DPRE", "PART")}
    ck = triton.compile(GluonASTSource(dw_kernel_h, SIG_H, consts, attrs), target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": warps})
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        open(f"{tmp}/k.ptx", "w").write(ck.asm["ptx"])
        out = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f"{tmp}/k.ptx", "-o", f"{tmp}/k.cubin"],
                             capture_output=True, text=True).stderr
    print(f"H stages {stages} warps {warps} BH {bh} NB {nb} ew {ew}: shared {ck.metadata.shared},",
          [l.split("Used")[1].strip() for l in out.splitlines() if "Used" in l],
          [l.strip() for l in out.splitlines() if "spill" in l])
    return ck


@gluon.jit
def dw_kernel_r(ALIVE, DY, H, W1, B1, W2, DPRE, PART, N, D: gl.constexpr, FF: gl.constexpr,
                BM: gl.constexpr, BH: gl.constexpr, SPAN: gl.constexpr, STAGES: gl.constexpr,
                ld_t: gl.constexpr, ld_w: gl.constexpr, ld_p: gl.constexpr, ml: gl.constexpr, ma: gl.constexpr,
                mb: gl.constexpr, NB: gl.constexpr):
    """Everything transposed (hidden units as the MMAs' M): z^T = w1c^T @ x^T and dg^T = w2c @ dy^T
    ([BH, BM]), dW1^T += dpre^T @ x and dW2 += g^T @ dy ([BH, D]), db1 += dpre^T @ ones. Row tiles of
    BM = 32, so more of them fit the shared-memory ring."""
    c = gl.program_id(0)
    s = gl.program_id(1)
    k = gl.program_id(2).to(gl.int64)
    if gl.load(ALIVE + k) == 0:
        return
    dt: gl.constexpr = DPRE.dtype.element_ty
    row_base = s.to(gl.int64) * SPAN
    H += (k * N + row_base) * D
    DY += (k * N + row_base) * D
    DPRE += (k * N + row_base) * FF
    W1 += k * D * FF
    W2 += k * FF * D
    B1 += k * FF
    hid0 = c * BH

    t_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, D], dt)
    w1_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([D, BH], dt)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BH, D], dt)
    p_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BH, BM], dt)
    o_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BM, NB], dt)

    x_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    dy_s = gl.allocate_shared_memory(dt, [STAGES, BM, D], t_sl)
    rows_ld = gl.arange(0, BM, layout=gl.SliceLayout(1, ld_t))
    cols_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_t))
    off = rows_ld[:, None] * D + cols_ld[None, :]
    n_it: gl.constexpr = SPAN // BM
    for j in gl.static_range(STAGES - 1):
        cp.async_copy_global_to_shared(x_s.index(j), H + j * BM * D + off)
        cp.async_copy_global_to_shared(dy_s.index(j), DY + j * BM * D + off)
        cp.commit_group()

    wr = gl.arange(0, D, layout=gl.SliceLayout(1, ld_w))
    wc = gl.arange(0, BH, layout=gl.SliceLayout(0, ld_w))
    w1_s = gl.allocate_shared_memory(dt, [D, BH], w1_sl, gl.load(W1 + wr[:, None] * FF + hid0 + wc[None, :]))
    w2r = gl.arange(0, BH, layout=gl.SliceLayout(1, ld_t))
    w2_s = gl.allocate_shared_memory(dt, [BH, D], w2_sl, gl.load(W2 + (hid0 + w2r)[:, None] * D + cols_ld[None, :]))
    ones_s = gl.allocate_shared_memory(dt, [BM, NB], o_sl, gl.full([BM, NB], 1.0, dt, ld_t))
    dpre_s = gl.allocate_shared_memory(dt, [BH, BM], p_sl)
    g_s = gl.allocate_shared_memory(dt, [BH, BM], p_sl)

    hid_l = gl.arange(0, BH, layout=gl.SliceLayout(1, ml))
    b1 = gl.load(B1 + hid0 + hid_l).to(gl.float32)
    prow = gl.arange(0, BM, layout=gl.SliceLayout(1, ld_p))
    phid = gl.arange(0, BH, layout=gl.SliceLayout(0, ld_p))
    off_p = prow[:, None] * FF + hid0 + phid[None, :]

    zero = gl.zeros([BH, BM], gl.float32, ml)
    w1t = w1_s.permute((1, 0))
    acc_w1 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW1^T chunk
    acc_w2 = warpgroup_mma_init(gl.zeros([BH, D], gl.float32, ma))  # dW2 chunk
    acc_b = warpgroup_mma_init(gl.zeros([BH, NB], gl.float32, mb))  # equal columns: db1
    fence_async_shared()
    gl.thread_barrier()

    for i in range(n_it):
        slot = i % STAGES
        cp.wait_group(STAGES - 2)
        gl.thread_barrier()
        fence_async_shared()
        xi = x_s.index(slot)
        dyi = dy_s.index(slot)
        z = warpgroup_mma(w1t, xi.permute((1, 0)), zero, use_acc=False, is_async=True)
        dg = warpgroup_mma(w2_s, dyi.permute((1, 0)), zero, use_acc=False, is_async=True)
        acc_w1, acc_w2, acc_b, z, dg = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b, z, dg])
        nxt = i + STAGES - 1
        if nxt < n_it:
            cp.async_copy_global_to_shared(x_s.index(nxt % STAGES), H + nxt * BM * D + off)
            cp.async_copy_global_to_shared(dy_s.index(nxt % STAGES), DY + nxt * BM * D + off)
        cp.commit_group()
        zz = (z.to(dt).to(gl.float32) + b1[:, None]).to(dt).to(gl.float32)
        cdf, pdf = _gelu_parts(zz)
        dpre = (dg.to(dt).to(gl.float32) * (cdf + zz * pdf)).to(dt)
        dpre_s.store(dpre)
        g_s.store((zz * cdf).to(dt))
        fence_async_shared()
        gl.thread_barrier()
        acc_w1 = warpgroup_mma(dpre_s, xi, acc_w1, is_async=True)
        acc_w2 = warpgroup_mma(g_s, dyi, acc_w2, is_async=True)
        acc_b = warpgroup_mma(dpre_s, ones_s, acc_b, is_async=True)
        gl.store(DPRE + i * BM * FF + off_p, dpre_s.permute((1, 0)).load(ld_p))
    cp.wait_group(0)
    acc_w1, acc_w2, acc_b = warpgroup_mma_wait(0, deps=[acc_w1, acc_w2, acc_b])
    PART += (k * gl.num_programs(1) + s) * (2 * D + 1) * FF
    gl.store(PART + 2 * D * FF + hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, mb)), gl.max(acc_b, 1))
    hid_a = hid0 + gl.arange(0, BH, layout=gl.SliceLayout(1, ma))
    cols_a = gl.arange(0, D, layout=gl.SliceLayout(0, ma))
    gl.store(PART + cols_a[None, :] * FF + hid_a[:, None], acc_w1)
    gl.store(PART + D * FF + hid_a[:, None] * D + cols_a[None, :], acc_w2)


SIG_R = dict(SIG_T, ld_p="constexpr", NB="constexpr")


def layouts_r(warps: int, bh: int, bm: int, nb: int) -> dict:
    wg = warps // 4
    mma = lambda n: gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, wg], instr_shape=[16, n // wg, 16])
    return dict(ld_t=gl.BlockedLayout([1, 8], [2, 16], [warps, 1], [1, 0]),
                ld_w=gl.BlockedLayout([1, 8], [32 // (bh // 8), bh // 8], [warps, 1], [1, 0]),
                ld_p=gl.BlockedLayout([1, 2], [32 // (bh // 2), bh // 2], [warps, 1], [1, 0]),
                ml=mma(bm), ma=mma(128), mb=mma(nb))


def compile_local_r(stages: int = 3, warps: int = 8, bh: int = 64, bm: int = 32, nb: int = 16, maxnreg=None):
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    import subprocess, os, tempfile
    consts = {"D": 128, "FF": 512, "BM": bm, "BH": bh, "SPAN": 4096, "STAGES": stages, "NB": nb,
              **layouts_r(warps, bh, bm, nb)}
    attrs = {(list(SIG_R).index(a),): [["tt.divisibility", 16]] for a in ("DY", "H", "W1", "B1", "W2", "DPRE", "PART")}
    opts = {"num_warps": warps}
    if maxnreg:
        opts["maxnreg"] = maxnreg
    ck = triton.compile(GluonASTSource(dw_kernel_r, SIG_R, consts, attrs), target=GPUTarget("cuda", 90, 32),
                        options=opts)
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        open(f"{tmp}/k.ptx", "w").write(ck.asm["ptx"])
        out = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", f"{tmp}/k.ptx", "-o", f"{tmp}/k.cubin"],
                             capture_output=True, text=True).stderr
    print(f"R stages {stages} warps {warps} BH {bh} BM {bm} NB {nb} maxnreg {maxnreg}: shared {ck.metadata.shared},",
          [l.split("Used")[1].strip() for l in out.splitlines() if "Used" in l],
          [l.strip() for l in out.splitlines() if "spill" in l])
    return ck


def _bench(fn, reps=30):
    import time
    import torch
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay()
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            g.replay()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / reps * 1e3)
    return best


def bench(batches=(256, 128)) -> None:
    import torch
    from pyphase import kernels, mlp
    torch.manual_seed(0)
    for b in batches:
        kk, n, d, f = 5, b * 256, 128, 512
        h = (torch.randn(kk, n, d, device="cuda") * 0.5).bfloat16()
        dy = (torch.randn(kk, n, d, device="cuda") * 0.01).bfloat16()
        w1 = (torch.randn(kk, d, f, device="cuda") * 0.05).bfloat16()
        b1 = (torch.randn(kk, f, device="cuda") * 0.05).bfloat16()
        w2 = (torch.randn(kk, f, d, device="cuda") * 0.05).bfloat16()
        alive = kernels.alive_mask(kk, h.device)
        grid, meta = mlp._launch("bwd", n, d, f, kk)
        span = meta["SPAN"]
        print(f"B={b}: pyphase grid {grid} meta {meta}", flush=True)
        dpre0 = torch.empty(kk, n, f, device="cuda", dtype=torch.bfloat16)
        parts0 = torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda", dtype=torch.float32)
        ks = {}

        def base():
            ks["k"] = mlp._mlp_bwd_dw_kernel[grid](alive, dy, h, w1, b1, w2, dpre0, parts0, n, d, f, **meta)
        ms0 = _bench(base)
        k0 = ks["k"]
        print(f"  pyphase dw kernel: {ms0:.3f} ms, regs {k0.n_regs} spills {k0.n_spills} shared {k0.metadata.shared}", flush=True)
        variants = []
        for st, w, bh, ew in [(2, 4, 32, False), (2, 4, 32, True)]:
            variants.append((f"gluon dw_kernel stages={st} warps={w} BH={bh} ew_bias={ew}", bh,
                             lambda g2, dp, pa, st=st, w=w, bh=bh, ew=ew: dw_kernel[g2](
                                 alive, dy, h, w1, b1, w2, dp, pa, n, D=d, FF=f, BM=64, BH=bh, SPAN=span, STAGES=st,
                                 EW_BIAS=ew, num_warps=w, **layouts(w, bh))))
        for st, w, bh, bm, nb, mr in [(3, 8, 64, 32, 16, None), (3, 8, 64, 32, 16, 128), (4, 8, 64, 32, 16, 128),
                                      (2, 8, 64, 32, 16, 128), (2, 8, 64, 64, 16, None), (6, 8, 64, 32, 16, 128)]:
            variants.append((f"gluon dw_kernel_r stages={st} warps={w} BH={bh} BM={bm} NB={nb} maxnreg={mr}", bh,
                             lambda g2, dp, pa, st=st, w=w, bh=bh, bm=bm, nb=nb, mr=mr: dw_kernel_r[g2](
                                 alive, dy, h, w1, b1, w2, dp, pa, n, D=d, FF=f, BM=bm, BH=bh, SPAN=span, STAGES=st,
                                 NB=nb, num_warps=w, **({"maxnreg": mr} if mr else {}), **layouts_r(w, bh, bm, nb))))
        for tag, bh, launch in variants:
            try:
                dp = torch.full_like(dpre0, float("nan"))
                pa = torch.full_like(parts0, float("nan"))
                g2 = (f // bh, grid[1], kk)

                def run():
                    ks["k"] = launch(g2, dp, pa)
                ms = _bench(run)
                kern = ks["k"]
                eq = [torch.equal(dp, dpre0), torch.equal(pa[..., : d * f], parts0[..., : d * f]),
                      torch.equal(pa[..., d * f: 2 * d * f], parts0[..., d * f: 2 * d * f]),
                      torch.equal(pa[..., 2 * d * f:], parts0[..., 2 * d * f:])]
                rel = ((pa[..., 2 * d * f:] - parts0[..., 2 * d * f:]).abs().max() / parts0[..., 2 * d * f:].abs().max()).item()
                print(f"  {tag}: {ms:.3f} ms (x{ms0 / ms:.3f}) regs {kern.n_regs} spills {kern.n_spills} "
                      f"shared {kern.metadata.shared}; equal dpre/dw1/dw2/db1: {eq} (db1 rel diff {rel:.2e})", flush=True)
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                print(f"  {tag}: FAILED {type(e).__name__}: {str(e)[:400]}", flush=True)


if __name__ == "__main__" and sys.argv[1] == "compile_t":
    for st, w, bh in [(2, 4, 64), (2, 8, 64), (3, 8, 64), (2, 4, 32), (3, 4, 32)]:
        compile_local_t(st, w, bh)

if __name__ == "__main__" and sys.argv[1] == "compile_h":
    for args in [(2, 4, 64, 8, False), (2, 4, 64, 8, True), (2, 4, 64, 16, False)]:
        compile_local_h(*args)

if __name__ == "__main__" and sys.argv[1] == "compile_r":
    for args in [(3, 8, 64, 32, 16), (4, 8, 64, 32, 16), (3, 4, 64, 32, 8), (2, 8, 64, 64, 16)]:
        compile_local_r(*args)

if __name__ == "__main__" and sys.argv[1] == "bench":
    bench()


def ncu_launches() -> None:
    """One launch each of pyphase's kernel and two Gluon variants (K = 5, B = 256), for ncu."""
    import torch
    from pyphase import kernels, mlp
    torch.manual_seed(0)
    kk, n, d, f = 5, 256 * 256, 128, 512
    h = (torch.randn(kk, n, d, device="cuda") * 0.5).bfloat16()
    dy = (torch.randn(kk, n, d, device="cuda") * 0.01).bfloat16()
    w1 = (torch.randn(kk, d, f, device="cuda") * 0.05).bfloat16()
    b1 = (torch.randn(kk, f, device="cuda") * 0.05).bfloat16()
    w2 = (torch.randn(kk, f, d, device="cuda") * 0.05).bfloat16()
    alive = kernels.alive_mask(kk, h.device)
    grid, meta = mlp._launch("bwd", n, d, f, kk)
    dp = torch.empty(kk, n, f, device="cuda", dtype=torch.bfloat16)
    pa = torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda", dtype=torch.float32)
    runs = [lambda: mlp._mlp_bwd_dw_kernel[grid](alive, dy, h, w1, b1, w2, dp, pa, n, d, f, **meta)]
    for ew in (False, True):
        runs.append(lambda ew=ew: dw_kernel[(f // 32, grid[1], kk)](alive, dy, h, w1, b1, w2, dp, pa, n, D=d, FF=f, BM=64,
                                                                    BH=32, SPAN=meta["SPAN"], STAGES=2, EW_BIAS=ew,
                                                                    num_warps=4, **layouts(4, 32)))
    for r in runs:  # compile and warm up
        r(); r()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for r in runs:
        r()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


if __name__ == "__main__" and sys.argv[1] == "ncu":
    ncu_launches()
