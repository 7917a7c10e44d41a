"""Device experiment: the input-gradient GEMM of a projection (dh = dp @ w^T: the MLP's dpre @ w1^T,
F = 512, or the attention's dqkv @ w_qkv^T, F = 384) with the add + LayerNorm backward that reads dh
in its epilogue, as one Triton kernel; against what the step runs now, cuBLAS's bmm and then
pyphase.layernorm's add + LayerNorm backward kernel (and its partial sums' sum). With d = 128 a
128-wide output tile holds whole rows, so the LayerNorm's row sums fit the epilogue, and dh (bf16)
never goes to memory. A prototype for timing: no masks (N divisible by the tiles), and the row sums
and the parameter-gradient partial sums run in another order than the LayerNorm kernel's, so dx
is compared with a tolerance; dh's GEMM part is checked bit for bit against cuBLAS (STORE_DH)."""
import sys, time
import torch
import triton
import triton.language as tl
from pyphase import layernorm
from pyphase.kernels import sum_parts


@triton.jit
def _dx_ln_kernel(DP, W, DXN, XN, MEAN, RSTD, LW, DX, DR, DH, PART, N, D: tl.constexpr, F: tl.constexpr,
                  BM: tl.constexpr, BJ: tl.constexpr, ITERS: tl.constexpr, STAGES: tl.constexpr,
                  STORE_DH: tl.constexpr):
    pid = tl.program_id(0)
    k = tl.program_id(1).to(tl.int64)
    rows = tl.arange(0, BM)
    cols = tl.arange(0, D)
    w = tl.load(LW + k * D + cols).to(tl.float32)
    s_dw = tl.zeros([D], tl.float32)
    s_db = tl.zeros([D], tl.float32)
    s_drb = tl.zeros([D], tl.float32)
    for it in range(ITERS):
        row0 = (pid * ITERS + it).to(tl.int64) * BM
        acc = tl.zeros([BM, D], tl.float32)
        for j in tl.range(0, F, BJ, num_stages=STAGES):
            jj = j + tl.arange(0, BJ)
            a = tl.load(DP + (k * N + row0 + rows)[:, None] * F + jj[None, :])
            b = tl.load(W + k * D * F + cols[None, :] * F + jj[:, None])
            acc = tl.dot(a, b, acc)
        dh = acc.to(DR.dtype.element_ty).to(tl.float32)
        off = (k * N + row0) * D + rows[:, None] * D + cols[None, :]
        if STORE_DH:
            tl.store(DH + off, dh.to(DR.dtype.element_ty))
        stat = k * N + row0 + rows
        mean = tl.load(MEAN + stat)
        rstd = tl.load(RSTD + stat)
        xhat = (tl.load(XN + off) - mean[:, None]) * rstd[:, None]
        g = dh * w[None, :]
        c1 = tl.sum(g * xhat, 1) / D
        c2 = tl.sum(g, 1) / D
        dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None] + tl.load(DXN + off)
        tl.store(DX + off, dx)
        tl.store(DR + off, dx.to(DR.dtype.element_ty))
        s_dw += tl.sum(dh * xhat, 0)
        s_db += tl.sum(dh, 0)
        s_drb += tl.sum(dx, 0)
    part = PART + (k * tl.num_programs(0) + pid) * 3 * D + cols
    tl.store(part, s_dw)
    tl.store(part + D, s_db)
    tl.store(part + 2 * D, s_drb)


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
    kk, d = 5, 128
    for b in [int(v) for v in sys.argv[1:]] or [256]:
        n = b * 256
        for f in (512, 384):
            dp = (torch.randn(kk, n, f, device="cuda") * 0.01).bfloat16()
            w = (torch.randn(kk, d, f, device="cuda") * 0.05).bfloat16()
            x = torch.randn(kk, n, d, device="cuda")
            mean = x.mean(-1)
            rstd = torch.rsqrt(x.var(-1, unbiased=False) + 1e-5)
            dxn = torch.randn(kk, n, d, device="cuda") * 0.01
            lw = 1 + 0.1 * torch.randn(kk, d, device="cuda")
            out = {}
            def ref():
                dh = torch.bmm(dp, w.transpose(1, 2))
                out["r"] = (dh, *layernorm._add_ln_bwd(dxn, dh, x, mean, rstd, lw, torch.bfloat16, True))
            ms_ref = bench(ref)
            def gemm_only():
                torch.bmm(dp, w.transpose(1, 2))
            ms_gemm = bench(gemm_only)
            dh0, dx0, dr0, sums0 = out["r"]
            print(f"B={b} F={f}: cuBLAS bmm + add_ln_bwd {ms_ref:.3f} ms (bmm alone {ms_gemm:.3f} ms)", flush=True)
            for bm, bj, warps, stages, iters in [(64, 64, 4, 3, 1), (64, 64, 4, 3, 4), (64, 128, 4, 2, 2), (128, 64, 8, 3, 1),
                                                 (128, 64, 8, 3, 2), (128, 32, 8, 4, 2), (128, 128, 8, 2, 1), (64, 32, 4, 4, 4)]:
                tag = f"BM={bm} BJ={bj} warps={warps} stages={stages} iters={iters}"
                try:
                    progs = n // (bm * iters)
                    dx = torch.empty_like(x); dr = torch.empty(kk, n, d, device="cuda", dtype=torch.bfloat16)
                    dh = torch.empty_like(dr)
                    part = torch.empty(kk, progs, 3 * d, device="cuda")
                    res = {}
                    def fused(store=False):
                        res["k"] = _dx_ln_kernel[(progs, kk)](dp, w, dxn, x, mean, rstd, lw, dx, dr, dh, part, n, d, f, bm, bj, iters,
                                                             stages, store, num_warps=warps)
                        res["s"] = sum_parts(part)
                    ms = bench(fused)
                    fused(True); torch.cuda.synchronize()
                    kern = res["k"]
                    err = ((dx - dx0).abs().max() / dx0.abs().max()).item()
                    serr = ((res["s"] - sums0.view(kk, -1)).abs().max() / sums0.abs().max()).item()
                    print(f"  {tag}: {ms:.3f} ms (x{ms_ref / ms:.3f}) regs/spills {(getattr(kern, 'n_regs', None), getattr(kern, 'n_spills', None))}; "
                          f"dh equal to cuBLAS: {torch.equal(dh, dh0)}; dx max rel err {err:.2e}, dx equal {torch.equal(dx, dx0)}; "
                          f"sums max rel err {serr:.2e}", flush=True)
                except Exception as e:  # noqa: BLE001
                    print(f"  {tag}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}", flush=True)


if __name__ == "__main__":
    main()
