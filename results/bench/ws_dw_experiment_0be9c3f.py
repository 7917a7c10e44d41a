"""Experiment: the MLP "dw" backward kernel with TMA (tensor-descriptor) loads of the row tiles and
Triton's warp specialization (tl.range(..., warp_specialize=True)), against pyphase.mlp's kernel.
Checks the outputs bit for bit and times both (K = 5, N = B·256 rows, d = 128, hidden 512).
Run on the device: python3 .dev/ws_dw.py [B ...]"""
import sys, time
import torch, triton, triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
from pyphase import mlp
from pyphase.mlp import _gelu_parts


@triton.jit
def _dw_ws_kernel(HD, DYD, W1, B1, W2, DPRE, PART, N, D: tl.constexpr, FF: tl.constexpr,
                  BD: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr, SPAN: tl.constexpr, WS: tl.constexpr):
    c = tl.program_id(0)
    s = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    hid = c * BH + tl.arange(0, BH)
    cols = tl.arange(0, BD)
    dt = DPRE.dtype.element_ty
    w1 = tl.load(W1 + k * D * FF + cols[:, None] * FF + hid[None, :])
    w2 = tl.load(W2 + k * FF * D + hid[:, None] * D + cols[None, :])
    b1 = tl.load(B1 + k * FF + hid).to(tl.float32)
    acc_w1 = tl.zeros([BD, BH], tl.float32)
    acc_w2 = tl.zeros([BH, BD], tl.float32)
    ones = tl.full([16, BM], 1.0, dt)
    acc_b = tl.zeros([16, BH], tl.float32)
    base = (k * N + s.to(tl.int64) * SPAN).to(tl.int32)
    for it in tl.range(0, SPAN, BM, warp_specialize=WS):
        x = HD.load([base + it, 0])
        dy = DYD.load([base + it, 0])
        z = (tl.dot(x, w1).to(dt).to(tl.float32) + b1[None, :]).to(dt).to(tl.float32)
        cdf, pdf = _gelu_parts(z)
        dg = tl.dot(dy, tl.trans(w2)).to(dt).to(tl.float32)
        dpre = (dg * (cdf + z * pdf)).to(dt)
        rows = (base + it + tl.arange(0, BM)).to(tl.int64)
        tl.store(DPRE + rows[:, None] * FF + hid[None, :], dpre)
        acc_w1 += tl.dot(tl.trans(x), dpre)
        acc_w2 += tl.dot(tl.trans((z * cdf).to(dt)), dy)
        acc_b += tl.dot(ones, dpre)
    PART += (k * tl.num_programs(1) + s) * (2 * BD + 1) * FF
    tl.store(PART + cols[:, None] * FF + hid[None, :], acc_w1)
    tl.store(PART + BD * FF + hid[:, None] * BD + cols[None, :], acc_w2)
    tl.store(PART + 2 * BD * FF + hid, tl.max(acc_b, 0))


def run_ws(dy, h, w1, b1, w2, bm, bh, span, warps, stages, ws):
    kk, n, d = h.shape
    f = w1.shape[-1]
    dpre = torch.empty(kk, n, f, device=h.device, dtype=h.dtype)
    spans = n // span
    parts = torch.empty(kk, spans, (2 * d + 1) * f, device=h.device, dtype=torch.float32)
    hd = TensorDescriptor.from_tensor(h.view(kk * n, d), [bm, d])
    dyd = TensorDescriptor.from_tensor(dy.view(kk * n, d), [bm, d])
    _dw_ws_kernel[(f // bh, spans, kk)](hd, dyd, w1, b1, w2, dpre, parts, n, d, f, d, bm, bh, span, ws,
                                       num_warps=warps, num_stages=stages)
    return dpre, parts


def bench(fn, reps=20):
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
        bm, bh, warps, stages, span = mlp.CONFIG["bwd"]
        # pyphase's kernel as the step launches it
        (grid, meta) = mlp._launch("bwd", n, d, f, kk)
        print(f"B={b}: pyphase launch grid {grid} meta {meta}")
        span = meta["SPAN"]
        dpre0 = torch.empty(kk, n, f, device="cuda", dtype=torch.bfloat16)
        parts0 = torch.empty(kk, grid[1], (2 * d + 1) * f, device="cuda", dtype=torch.float32)
        def base():
            mlp._mlp_bwd_dw_kernel[grid](dy, h, w1, b1, w2, dpre0, parts0, n, d, f, **meta)
        ms0 = bench(base)
        print(f"  pyphase dw kernel: {ms0:.3f} ms")
        for (bm_, bh_, warps_, stages_, ws) in [(bm, bh, warps, stages, False), (bm, bh, 8, 3, True), (bm, bh, 8, 4, True),
                                                (bm, bh, 8, 2, True), (bm, 64, 8, 2, True), (bm, 64, 8, 3, True),
                                                (128, bh, 8, 3, True), (128, 64, 8, 2, True), (bm, bh, 8, 3, False)]:
            tag = f"BM={bm_} BH={bh_} warps={warps_} stages={stages_} ws={ws}"
            try:
                out = {}
                def w():
                    out["r"] = run_ws(dy, h, w1, b1, w2, bm_, bh_, span, warps_, stages_, ws)
                ms = bench(w)
                dp, pa = out["r"]
                same = torch.equal(dp, dpre0) and (torch.equal(pa, parts0) if bh_ == bh and bm_ == bm else None)
                print(f"  {tag}: {ms:.3f} ms (x{ms0 / ms:.3f}), dpre equal: {torch.equal(dp, dpre0)}, partial sums equal: {same}")
            except Exception as e:  # noqa: BLE001
                print(f"  {tag}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")


if __name__ == "__main__":
    main()
