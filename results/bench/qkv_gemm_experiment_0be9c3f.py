"""Experiment: the QKV projection as a Triton GEMM whose epilogue adds the bias as the attention kernels
do now (round(round(h @ w) + b), b in bf16), against cuBLAS's torch.bmm; then that GEMM plus attention
kernels without the bias adds in their loops (.dev/attn_nb.py's variant) against bmm plus the kernels
as they are. Checks bits. python3 .dev/qkv_gemm.py [B ...]"""
import sys, time
import torch, triton, triton.language as tl
sys.argv, args = sys.argv[:1], sys.argv[1:]
import attn_nb  # noqa: E402  (.dev/attn_nb.py: builds the variant module NB; runs its own bench on import only with argv)
NB, A, bench = attn_nb.NB, attn_nb.A, attn_nb.bench


@triton.jit
def _linear_bias_kernel(H, W, B, OUT, N, D: tl.constexpr, F: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                        HAS_B: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    dd = tl.arange(0, D)
    h = tl.load(H + (k * N + rows)[:, None] * D + dd[None, :])
    w = tl.load(W + k * D * F + dd[:, None] * F + cols[None, :])
    y = tl.dot(h, w).to(OUT.dtype.element_ty)
    if HAS_B:
        y = (y.to(tl.float32) + tl.load(B + k * F + cols).to(tl.float32)[None, :]).to(OUT.dtype.element_ty)
    tl.store(OUT + (k * N + rows)[:, None] * F + cols[None, :], y)


@triton.jit
def _linear_bias_loop_kernel(H, W, B, OUT, N, D: tl.constexpr, F: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    pid_m = tl.program_id(0)
    k = tl.program_id(1).to(tl.int64)
    rows = pid_m * BM + tl.arange(0, BM)
    dd = tl.arange(0, D)
    h = tl.load(H + (k * N + rows)[:, None] * D + dd[None, :])
    for j in tl.static_range(F // BN):
        cols = j * BN + tl.arange(0, BN)
        w = tl.load(W + k * D * F + dd[:, None] * F + cols[None, :])
        y = tl.dot(h, w).to(OUT.dtype.element_ty)
        y = (y.to(tl.float32) + tl.load(B + k * F + cols).to(tl.float32)[None, :]).to(OUT.dtype.element_ty)
        tl.store(OUT + (k * N + rows)[:, None] * F + cols[None, :], y)


def linear_bias_loop(h, w, b, bm, bn, warps, stages):
    kk, n, d = h.shape
    f = w.shape[-1]
    out = torch.empty(kk, n, f, device=h.device, dtype=h.dtype)
    _linear_bias_loop_kernel[(n // bm, kk)](h, w, b, out, n, d, f, bm, bn, num_warps=warps, num_stages=stages)
    return out


def linear_bias(h, w, b, bm, bn, warps, has_b=True):
    kk, n, d = h.shape
    f = w.shape[-1]
    out = torch.empty(kk, n, f, device=h.device, dtype=h.dtype)
    _linear_bias_kernel[(n // bm, f // bn, kk)](h, w, b, out, n, d, f, bm, bn, has_b, num_warps=warps, num_stages=1)
    return out


torch.manual_seed(0)
for b in [int(v) for v in args] or [256]:
    kk, t, d, nh = 5, 256, 128, 4
    n = b * t
    h = torch.randn(kk, n, d, device="cuda").bfloat16()
    w = (torch.randn(kk, d, 3 * d, device="cuda") * 0.1).bfloat16()
    bias = (torch.randn(kk, 3 * d, device="cuda") * 0.2).bfloat16()
    do = torch.randn(kk, n, d, device="cuda").bfloat16()
    ref = torch.bmm(h, w)
    ms_bmm = bench(lambda: torch.bmm(h, w))
    print(f"B={b} cuBLAS bmm (K={kk}, {n}x{d} @ {d}x{3*d}): {ms_bmm:.3f} ms")
    best = None
    for bm, bn, warps in [(64, 128, 4), (128, 128, 4), (128, 128, 8), (64, 64, 4), (128, 64, 4), (256, 128, 8), (64, 128, 8)]:
        try:
            y = linear_bias(h, w, bias, bm, bn, warps, has_b=False)
            same = torch.equal(y, ref)
            ms = bench(lambda: linear_bias(h, w, bias, bm, bn, warps))
            print(f"  Triton ({bm}, {bn}, {warps} warps) with bias: {ms:.3f} ms; without bias equal to bmm bit for bit: {same}"
                  f" ({(y != ref).sum().item()} of {y.numel()} differ)")
            if same and (best is None or ms < best[0]):
                best = (ms, bm, bn, warps)
        except Exception as e:  # noqa: BLE001
            print(f"  Triton ({bm}, {bn}, {warps}): FAILED {type(e).__name__} {str(e)[:200]}")
    yb = linear_bias(h, w, bias, 64, 128, 4)
    for bm, bn, warps, stages in [(64, 128, 4, 1), (64, 128, 4, 2), (128, 128, 8, 2), (64, 64, 4, 2), (32, 128, 4, 2), (128, 128, 4, 2)]:
        try:
            y = linear_bias_loop(h, w, bias, bm, bn, warps, stages)
            ms = bench(lambda: linear_bias_loop(h, w, bias, bm, bn, warps, stages))
            print(f"  Triton, one program per row tile looping over the columns ({bm}, {bn}, {warps} warps, {stages} stages): "
                  f"{ms:.3f} ms, equal to the tiled kernel's: {torch.equal(y, yb)}")
        except Exception as e:  # noqa: BLE001
            print(f"  loop ({bm}, {bn}, {warps}, {stages}): FAILED {type(e).__name__} {str(e)[:200]}")
    if best is None:
        continue
    _, bm, bn, warps = best
    # the bias as the attention kernels add it
    qkv_b = linear_bias(h, w, bias, bm, bn, warps)
    o0, lse0 = A._attn_fwd(ref, bias, b, t, nh)
    o1, lse1 = NB._attn_fwd(qkv_b, bias, b, t, nh)
    g0 = A._attn_bwd(do, ref, bias, o0, lse0, b, t, nh)
    g1 = NB._attn_bwd(do, qkv_b, bias, o1, lse1, b, t, nh)
    print(f"  attention outputs equal (o, lse, dqkv, dbias): {[torch.equal(x, y) for x, y in zip((o0, lse0, *g0), (o1, lse1, *g1))]}")
    def old():
        q = torch.bmm(h, w); o, l = A._attn_fwd(q, bias, b, t, nh); A._attn_bwd(do, q, bias, o, l, b, t, nh)
    def new():
        q = linear_bias(h, w, bias, bm, bn, warps); o, l = NB._attn_fwd(q, bias, b, t, nh); NB._attn_bwd(do, q, bias, o, l, b, t, nh)
    for _ in range(2):
        print(f"  QKV GEMM + attention fwd + bwd per layer: as is {bench(old):.3f} ms, Triton GEMM with bias + no adds {bench(new):.3f} ms")
