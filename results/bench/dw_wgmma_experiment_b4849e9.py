"""Device experiment: pyphase.mlp's "dw" backward kernel with every tile product on Hopper's
warpgroup MMA. Compiled for sm_90, the current kernel runs two of its five products through the
older mma.sync path (g^T @ dy is 32 rows tall; the bias's ones @ dpre 16) and stores w2's transposed
chunk to shared memory on every iteration. Variants (flags): HOIST loads w2^T once, before the loop;
W2T accumulates dW2^T = dy^T @ g (128 rows tall, like dW1) and stores it transposed; BIASWG sums
the bias with a 64-row ones tile (a warpgroup product). Compares dpre and the partial sums with
pyphase's kernel bit for bit and times each as one kernel in a CUDA graph."""
import sys, time
import torch
import triton
import triton.language as tl
from pyphase import mlp
from pyphase.mlp import _gelu_parts


@triton.jit
def _dw2_kernel(DY, H, W1, B1, W2, DPRE, PART, N, D: tl.constexpr, FF: tl.constexpr, BD: tl.constexpr,
                BM: tl.constexpr, BH: tl.constexpr, SPAN: tl.constexpr, HOIST: tl.constexpr, W2T: tl.constexpr,
                BIASWG: tl.constexpr):
    c = tl.program_id(0)
    s = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    hid = c * BH + tl.arange(0, BH)
    cols = tl.arange(0, BD)
    h_ok = hid < FF
    c_ok = cols < D
    dt = DPRE.dtype.element_ty
    w1 = tl.load(W1 + k * D * FF + cols[:, None] * FF + hid[None, :], mask=c_ok[:, None] & h_ok[None, :], other=0.0)
    if HOIST:
        w2t = tl.load(W2 + k * FF * D + hid[None, :] * D + cols[:, None], mask=c_ok[:, None] & h_ok[None, :], other=0.0)
    else:
        w2 = tl.load(W2 + k * FF * D + hid[:, None] * D + cols[None, :], mask=h_ok[:, None] & c_ok[None, :], other=0.0)
    b1 = tl.load(B1 + k * FF + hid, mask=h_ok, other=0.0).to(tl.float32)
    acc_w1 = tl.zeros([BD, BH], tl.float32)
    if W2T:
        acc_w2 = tl.zeros([BD, BH], tl.float32)
    else:
        acc_w2 = tl.zeros([BH, BD], tl.float32)
    if BIASWG:
        ones = tl.full([64, BM], 1.0, dt)
        acc_b = tl.zeros([64, BH], tl.float32)
    else:
        ones = tl.full([16, BM], 1.0, dt)
        acc_b = tl.zeros([16, BH], tl.float32)
    for it in range(0, SPAN, BM):
        rows = s.to(tl.int64) * SPAN + it + tl.arange(0, BM)
        r_ok = rows < N
        m = r_ok[:, None] & c_ok[None, :]
        x = tl.load(H + (k * N + rows)[:, None] * D + cols[None, :], mask=m, other=0.0)
        dy = tl.load(DY + (k * N + rows)[:, None] * D + cols[None, :], mask=m, other=0.0)
        z = (tl.dot(x, w1).to(dt).to(tl.float32) + b1[None, :]).to(dt).to(tl.float32)
        cdf, pdf = _gelu_parts(z)
        if HOIST:
            dg = tl.dot(dy, w2t).to(dt).to(tl.float32)
        else:
            dg = tl.dot(dy, tl.trans(w2)).to(dt).to(tl.float32)
        dpre = (dg * (cdf + z * pdf)).to(dt)
        tl.store(DPRE + (k * N + rows)[:, None] * FF + hid[None, :], dpre, mask=r_ok[:, None] & h_ok[None, :])
        acc_w1 += tl.dot(tl.trans(x), dpre)
        if W2T:
            acc_w2 += tl.dot(tl.trans(dy), (z * cdf).to(dt))
        else:
            acc_w2 += tl.dot(tl.trans((z * cdf).to(dt)), dy)
        acc_b += tl.dot(ones, dpre)
    PART += (k * tl.num_programs(1) + s) * (2 * BD + 1) * FF
    tl.store(PART + cols[:, None] * FF + hid[None, :], acc_w1, mask=c_ok[:, None] & h_ok[None, :])
    if W2T:
        tl.store(PART + BD * FF + hid[None, :] * BD + cols[:, None], acc_w2, mask=c_ok[:, None] & h_ok[None, :])
    else:
        tl.store(PART + BD * FF + hid[:, None] * BD + cols[None, :], acc_w2, mask=h_ok[:, None] & c_ok[None, :])
    tl.store(PART + 2 * BD * FF + hid, tl.max(acc_b, 0), mask=h_ok)


def bench(fn, reps=30):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        g.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1e3


def main():
    torch.manual_seed(0)
    for b in [int(v) for v in sys.argv[1:]] or [256]:
        kk, n, d, f = 5, b * 256, 128, 512
        h = (torch.randn(kk, n, d, device="cuda") * 0.5).bfloat16()
        dy = (torch.randn(kk, n, d, device="cuda") * 0.01).bfloat16()
        w1 = (torch.randn(kk, d, f, device="cuda") * 0.05).bfloat16()
        b1 = (torch.randn(kk, f, device="cuda") * 0.05).bfloat16()
        w2 = (torch.randn(kk, f, d, device="cuda") * 0.05).bfloat16()
        grid, meta = mlp._launch("bwd", n, d, f, kk)
        span = meta["SPAN"]
        print(f"B={b}: pyphase launch grid {grid} meta {meta}", flush=True)
        dpre0 = torch.empty(kk, n, f, device="cuda", dtype=torch.bfloat16)
        parts0 = torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda", dtype=torch.float32)
        def base():
            mlp._mlp_bwd_dw_kernel[grid](dy, h, w1, b1, w2, dpre0, parts0, n, d, f, **meta)
        ms0 = bench(base)
        print(f"  pyphase dw kernel: {ms0:.3f} ms", flush=True)
        runs = [((64, 32, 4, 3), fl) for fl in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1)]]
        runs += [(cfg, (1, 1, 1)) for cfg in [(64, 32, 4, 4), (64, 32, 4, 2), (128, 32, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3),
                                              (64, 64, 8, 3), (128, 64, 8, 3), (128, 64, 8, 2), (32, 32, 4, 3)]]
        runs += [(cfg, (1, 1, 0)) for cfg in [(128, 32, 8, 3), (64, 64, 8, 3), (128, 64, 8, 3)]]
        for (bm, bh, warps, stages), (ho, wt, bw) in runs:
            tag = f"BM={bm} BH={bh} warps={warps} stages={stages} hoist={ho} w2t={wt} biaswg={bw}"
            try:
                dp = torch.empty_like(dpre0)
                pa = torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda", dtype=torch.float32)
                g2 = (triton.cdiv(f, bh), grid[1], kk)
                k2 = {}
                def w():
                    k2["k"] = _dw2_kernel[g2](dy, h, w1, b1, w2, dp, pa, n, d, f, d, bm, bh, span, bool(ho), bool(wt), bool(bw),
                                              num_warps=warps, num_stages=stages)
                ms = bench(w)
                kern = k2["k"]
                regs = (getattr(kern, "n_regs", None), getattr(kern, "n_spills", None))
                eq = [torch.equal(dp, dpre0), torch.equal(pa[..., : d * f], parts0[..., : d * f]),
                      torch.equal(pa[..., d * f: 2 * d * f], parts0[..., d * f: 2 * d * f]), torch.equal(pa[..., 2 * d * f:], parts0[..., 2 * d * f:])]
                print(f"  {tag}: {ms:.3f} ms (x{ms0 / ms:.3f}) regs/spills {regs}; equal dpre/dw1/dw2/db1: {eq}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"  {tag}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}", flush=True)


if __name__ == "__main__":
    main()
