"""Experiment: Triton GEMMs for the QKV projection with the bias epilogue (round(round(h @ w) + b)):
pyphase.linear's tiled kernel, one program per row tile looping over the column tiles, and a
persistent kernel, against cuBLAS bmm (no bias). Bits checked against pyphase.linear's kernel.
python3 .dev/gemm_sweep.py [B ...]"""
import sys, time
import torch, triton, triton.language as tl
from pyphase import linear


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


@triton.jit
def _loop_kernel(H, W, B, OUT, N, D: tl.constexpr, F: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    pid_m = tl.program_id(0)
    k = tl.program_id(1).to(tl.int64)
    rows = pid_m * BM + tl.arange(0, BM)
    dd = tl.arange(0, D)
    h = tl.load(H + (k * N + rows)[:, None] * D + dd[None, :])
    for j in tl.static_range(F // BN):
        cols = j * BN + tl.arange(0, BN)
        w = tl.load(W + k * D * F + dd[:, None] * F + cols[None, :])
        y = tl.dot(h, w).to(OUT.dtype.element_ty).to(tl.float32) + tl.load(B + k * F + cols).to(tl.float32)[None, :]
        tl.store(OUT + (k * N + rows)[:, None] * F + cols[None, :], y.to(OUT.dtype.element_ty))


@triton.jit
def _persistent_kernel(H, W, B, OUT, N, KK, D: tl.constexpr, F: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       NPROG: tl.constexpr, STAGES: tl.constexpr):
    pid = tl.program_id(0)
    tm = N // BM
    tn = F // BN
    total = tm * tn * KK
    dd = tl.arange(0, D)
    for tile in tl.range(pid, total, NPROG, num_stages=STAGES):
        n_i = tile % tn
        m_i = (tile // tn) % tm
        k = (tile // (tn * tm)).to(tl.int64)
        rows = m_i * BM + tl.arange(0, BM)
        cols = n_i * BN + tl.arange(0, BN)
        h = tl.load(H + (k * N + rows)[:, None] * D + dd[None, :])
        w = tl.load(W + k * D * F + dd[:, None] * F + cols[None, :])
        y = tl.dot(h, w).to(OUT.dtype.element_ty).to(tl.float32) + tl.load(B + k * F + cols).to(tl.float32)[None, :]
        tl.store(OUT + (k * N + rows)[:, None] * F + cols[None, :], y.to(OUT.dtype.element_ty))


torch.manual_seed(0)
for b in [int(v) for v in sys.argv[1:]] or [256]:
    kk, n, d, f = 5, b * 256, 128, 384
    h = torch.randn(kk, n, d, device="cuda").bfloat16()
    w = (torch.randn(kk, d, f, device="cuda") * 0.1).bfloat16()
    bias = (torch.randn(kk, f, device="cuda") * 0.2).bfloat16()
    ref = linear._linear_bias_fwd(h, w, bias)
    print(f"B={b}: cuBLAS bmm (no bias) {bench(lambda: torch.bmm(h, w)):.3f} ms; pyphase.linear {linear.CONFIG['fwd']} "
          f"{bench(lambda: linear._linear_bias_fwd(h, w, bias)):.3f} ms")
    out = torch.empty_like(ref)
    for bm, bn, warps, stages in [(64, 128, 4, 1), (64, 128, 4, 2), (128, 128, 8, 2), (64, 64, 4, 2), (32, 128, 4, 2),
                                  (128, 128, 4, 2), (64, 128, 8, 2)]:
        try:
            fn = lambda: _loop_kernel[(n // bm, kk)](h, w, bias, out, n, d, f, bm, bn, num_warps=warps, num_stages=stages)
            ms = bench(fn)
            print(f"  column loop ({bm}, {bn}, {warps} warps, {stages} stages): {ms:.3f} ms, equal: {torch.equal(out, ref)}")
        except Exception as e:  # noqa: BLE001
            print(f"  column loop ({bm}, {bn}, {warps}, {stages}): FAILED {type(e).__name__} {str(e)[:200]}")
    for bm, bn, warps, stages, per_sm in [(64, 128, 4, 2, 2), (64, 128, 4, 3, 2), (128, 128, 8, 2, 1), (64, 128, 4, 2, 4),
                                          (128, 128, 4, 3, 2), (64, 64, 4, 3, 4), (128, 128, 8, 3, 2)]:
        nprog = 132 * per_sm
        try:
            out.zero_()
            fn = lambda: _persistent_kernel[(nprog,)](h, w, bias, out, n, kk, d, f, bm, bn, nprog, stages, num_warps=warps)
            ms = bench(fn)
            print(f"  persistent ({bm}, {bn}, {warps} warps, {stages} stages, {nprog} programs): {ms:.3f} ms, equal: {torch.equal(out, ref)}")
        except Exception as e:  # noqa: BLE001
            print(f"  persistent ({bm}, {bn}, {warps}, {stages}, {nprog}): FAILED {type(e).__name__} {str(e)[:200]}")
