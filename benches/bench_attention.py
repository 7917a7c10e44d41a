"""Causal attention of the packed model: pyphase's Triton kernels against the stock PyTorch path.

Times forward + backward of the attention step inside one packed transformer layer, from the QKV
projection's output (K, B·T, 3d) without bias to the (K, B·T, d) output and the gradient w.r.t.
projection and bias, for
  stock     bias add, split/transpose, scaled_dot_product_attention (flash), transpose back, under
            torch.compile (what pyphase ran before attention.py), and its gradient's concatenation
  triton    pyphase.attention.causal_attention (optionally several launch configurations)
and checks both against an fp64 reference on the same bf16 inputs. CUDA only:
    python benches/bench_attention.py --k 5 --b 256 --configs "64,64,4,2;128,64,8,2" [--json PATH]
"""
from __future__ import annotations

import argparse
import json

import torch

from pyphase import attention
from pyphase.attention import attention_reference, causal_attention


def timed(fn, iters: int) -> float:
    """Median ms of `fn` over `iters` calls (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--t", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--configs", default="", help="';'-separated 'bm,bn,warps,stages' for fwd and bwd")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, b, t, d, nh = a.k, a.b, a.t, a.d, a.heads
    qkv = (torch.randn(k, b * t, 3 * d, device=dev, generator=g) * 1.5).bfloat16().requires_grad_()
    bias = (torch.randn(k, 3 * d, device=dev, generator=g) * 0.2).bfloat16().requires_grad_()
    do = torch.randn(k, b * t, d, device=dev, generator=g).bfloat16()

    stock = torch.compile(attention_reference, dynamic=False)

    def run(fn):
        def step():
            y = fn(qkv, bias, b, t, nh)
            torch.autograd.grad(y, (qkv, bias), do)
        return step

    def triton_fn(q, bb, *dims):
        return causal_attention(q, bb, *dims, use_triton=True)

    # Accuracy on a slice of the problem (fp64 reference on the same bf16 inputs).
    ns = 8
    sl = (slice(0, 2), slice(0, ns * t))
    q_s, b_s, do_s = qkv.detach()[sl].clone(), bias.detach()[:2].clone(), do[sl].clone()
    ref_in = [z.double().requires_grad_() for z in (q_s, b_s)]
    ref_y = attention_reference(ref_in[0], ref_in[1], ns, t, nh)
    ref_g = torch.autograd.grad(ref_y, ref_in, do_s.double())
    acc = {}
    for name, fn in (("stock", attention_reference), ("triton", triton_fn)):
        ins = [z.clone().requires_grad_() for z in (q_s, b_s)]
        y = fn(ins[0], ins[1], ns, t, nh)
        gr = torch.autograd.grad(y, ins, do_s)
        acc[name] = {
            "out_max_abs_err": (y.double() - ref_y).abs().max().item(),
            "dqkv_max_abs_err": (gr[0].double() - ref_g[0]).abs().max().item(),
            "dbias_max_rel_err": ((gr[1].double() - ref_g[1]).abs().max() / ref_g[1].abs().max()).item(),
        }

    rows = []
    ms_stock = timed(run(stock), a.iters)
    rows.append({"variant": "stock (compiled, flash SDPA)", "ms": ms_stock})
    configs = [c for c in a.configs.split(";") if c.strip()] or [",".join(map(str, attention.CONFIG["fwd"]))]
    base = dict(attention.CONFIG)
    for c in configs:
        cfg = tuple(int(v) for v in c.split(","))
        attention.CONFIG.update(fwd=cfg, bwd=cfg)
        ms = timed(run(triton_fn), a.iters)
        rows.append({"variant": f"triton {cfg}", "ms": ms})
    attention.CONFIG.update(base)
    # Forward alone, default configuration.
    with torch.no_grad():
        ms_fwd_stock = timed(lambda: stock(qkv, bias, b, t, nh), a.iters)
        ms_fwd_triton = timed(lambda: causal_attention(qkv, bias, b, t, nh, use_triton=True), a.iters)

    print(f"causal attention fwd+bwd, K={k} B={b} T={t} d={d} heads={nh} (head dim {d // nh}), bf16, "
          f"{torch.cuda.get_device_name()} torch {torch.__version__}")
    for r in rows:
        print(f"  {r['variant']:<34} {r['ms']:8.3f} ms   x{ms_stock / r['ms']:.2f} vs stock")
    print(f"  forward only: stock {ms_fwd_stock:.3f} ms, triton {ms_fwd_triton:.3f} ms (x{ms_fwd_stock / ms_fwd_triton:.2f})")
    for name, e in acc.items():
        print(f"  accuracy {name:<7} vs fp64: out {e['out_max_abs_err']:.2e}, dqkv {e['dqkv_max_abs_err']:.2e}, "
              f"dbias rel {e['dbias_max_rel_err']:.2e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"shape": dict(k=k, b=b, t=t, d=d, heads=nh), "rows": rows, "fwd_ms": [ms_fwd_stock, ms_fwd_triton],
                       "accuracy": acc, "device": torch.cuda.get_device_name(), "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
