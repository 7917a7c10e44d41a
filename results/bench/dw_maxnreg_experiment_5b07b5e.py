"""Device microbench: pyphase.mlp's "dw" backward kernel at other row tiles, stages and register caps
(fewer registers and less shared memory for a third program an SM), against its launch; outputs bit for bit."""
import sys, time, torch
from pyphase import mlp


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


torch.manual_seed(0)
for b in (256, 128):
    kk, n, d, f = 5, b * 256, 128, 512
    h = (torch.randn(kk, n, d, device="cuda") * 0.5).bfloat16()
    dy = (torch.randn(kk, n, d, device="cuda") * 0.01).bfloat16()
    w1 = (torch.randn(kk, d, f, device="cuda") * 0.05).bfloat16()
    b1 = (torch.randn(kk, f, device="cuda") * 0.05).bfloat16()
    w2 = (torch.randn(kk, f, d, device="cuda") * 0.05).bfloat16()
    grid, meta = mlp._launch("bwd", n, d, f, kk)
    span = meta["SPAN"]
    out0 = (torch.empty(kk, n, f, device="cuda", dtype=torch.bfloat16), torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda"))
    ms0 = bench(lambda: mlp._mlp_bwd_dw_kernel[grid](dy, h, w1, b1, w2, *out0, n, d, f, **meta))
    print(f"B={b}: pyphase launch {meta}: {ms0:.3f} ms", flush=True)
    for bm, bh, warps, stages, cap in [(64, 32, 4, 3, 0), (32, 32, 4, 3, 168), (32, 32, 4, 3, 0), (32, 32, 4, 2, 168), (64, 32, 4, 2, 168),
                                       (64, 32, 4, 3, 168), (32, 32, 4, 4, 168)]:
        try:
            out = (torch.empty_like(out0[0]), torch.empty_like(out0[1]))
            m = dict(meta, BM=bm, BH=bh, num_warps=warps, num_stages=stages, **({"maxnreg": cap} if cap else {}))
            g2 = (f // bh, grid[1], kk)
            k = {}
            def run():
                k["k"] = mlp._mlp_bwd_dw_kernel[g2](dy, h, w1, b1, w2, *out, n, d, f, **m)
            ms = bench(run)
            kern = k["k"]
            print(f"  BM={bm} BH={bh} warps={warps} stages={stages} maxnreg={cap}: {ms:.3f} ms (x{ms0 / ms:.3f}), regs/spills "
                  f"{(kern.n_regs, kern.n_spills)}, outputs equal: {torch.equal(out[0], out0[0]) and torch.equal(out[1], out0[1])}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"  BM={bm} BH={bh} warps={warps} stages={stages} maxnreg={cap}: FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
