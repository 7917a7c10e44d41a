"""Causal attention of the packed model: pyphase's Triton kernels against the stock PyTorch path.

Times forward + backward of the attention step inside one packed transformer layer, from the QKV
projection's output (K, B·T, 3d) without bias to the (K, B·T, d) output and the gradient w.r.t.
projection and bias, for
  stock     bias add, split/transpose, scaled_dot_product_attention (flash), transpose back, under
            torch.compile (what pyphase ran before attention.py), and its gradient's concatenation
  triton    pyphase.attention.causal_attention (optionally several launch configurations)
and checks both against an fp64 reference on the same bf16 inputs. CUDA only:
    python benches/bench_attention.py --k 5 --b 256 [--fwd-configs "64,64,4,2;128,64,8,2"]
        [--bwd-configs "32,128,128,32,4,3;64,64,64,64,4,2"] [--bias-in-qkv] [--json PATH]
(--bias-in-qkv: the triton rows read a projection that already holds the bias, added once before
timing, as the packed model on CUDA does since pyphase.linear; the stock row adds it as always)
(configurations as in pyphase.attention.CONFIG; the first of each list is timed with the other's default)
"""
from __future__ import annotations

import json

import torch

from pyphase import attention
from pyphase.attention import attention_reference, causal_attention

from kernel_bench import parser, timed  # noqa: E402  (benches/ is the script's own folder)


def main() -> None:
    ap = parser(__doc__, iters=50, configs=False)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--fwd-configs", default="", help="';'-separated 'bm,bn,warps,stages'")
    ap.add_argument("--bwd-configs", default="", help="';'-separated 'bm1,bn1,bm2,bn2,warps,stages'")
    ap.add_argument("--bias-in-qkv", action="store_true", help="triton rows: the bias already in the projection")
    a = ap.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, b, t, d, nh = a.k, a.b, a.t, a.d, a.heads
    qkv = (torch.randn(k, b * t, 3 * d, device=dev, generator=g) * 1.5).bfloat16().requires_grad_()
    bias = (torch.randn(k, 3 * d, device=dev, generator=g) * 0.2).bfloat16().requires_grad_()
    do = torch.randn(k, b * t, d, device=dev, generator=g).bfloat16()

    stock = torch.compile(attention_reference, dynamic=False)

    # the projection the triton rows read: with --bias-in-qkv the bias added once, outside the timing
    qkv_t = (qkv.detach() + bias.detach()[:, None]).requires_grad_() if a.bias_in_qkv else qkv

    def run(fn, q=qkv):
        def step():
            y = fn(q, bias, b, t, nh)
            torch.autograd.grad(y, (q, bias), do)
        return step

    def triton_fn(q, bb, *dims):
        return causal_attention(q, bb, *dims, use_triton=True, bias_in_qkv=a.bias_in_qkv)

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
        q_in = ins[0] + ins[1][:, None].detach() if name == "triton" and a.bias_in_qkv else ins[0]
        y = fn(q_in, ins[1], ns, t, nh)
        gr = torch.autograd.grad(y, ins, do_s)
        acc[name] = {
            "out_max_abs_err": (y.double() - ref_y).abs().max().item(),
            "dqkv_max_abs_err": (gr[0].double() - ref_g[0]).abs().max().item(),
            "dbias_max_rel_err": ((gr[1].double() - ref_g[1]).abs().max() / ref_g[1].abs().max()).item(),
        }

    rows = []
    ms_stock = timed(run(stock), a.iters)
    rows.append({"variant": "stock (compiled, flash SDPA)", "pass": "fwd+bwd", "ms": ms_stock})
    base = dict(attention.CONFIG)
    rows.append({"variant": f"triton default {base['fwd']} {base['bwd']}", "pass": "fwd+bwd",
                 "ms": timed(run(triton_fn, qkv_t), a.iters)})
    for c in [c for c in a.bwd_configs.split(";") if c.strip()]:
        attention.CONFIG.update(base, bwd=tuple(int(v) for v in c.split(",")))
        rows.append({"variant": f"triton bwd {attention.CONFIG['bwd']}", "pass": "fwd+bwd",
                     "ms": timed(run(triton_fn, qkv_t), a.iters)})
    attention.CONFIG.update(base)
    with torch.no_grad():
        ms_fwd_stock = timed(lambda: stock(qkv, bias, b, t, nh), a.iters)
        fwd_rows = [{"variant": "stock (compiled, flash SDPA)", "pass": "fwd", "ms": ms_fwd_stock}]
        for c in [",".join(map(str, base["fwd"]))] + [c for c in a.fwd_configs.split(";") if c.strip()]:
            attention.CONFIG.update(base, fwd=tuple(int(v) for v in c.split(",")))
            fwd_rows.append({"variant": f"triton fwd {attention.CONFIG['fwd']}", "pass": "fwd",
                             "ms": timed(lambda: triton_fn(qkv_t, bias, b, t, nh), a.iters)})
    attention.CONFIG.update(base)

    print(f"causal attention fwd+bwd, K={k} B={b} T={t} d={d} heads={nh} (head dim {d // nh}), bf16, "
          f"{'triton rows with the bias in qkv, ' if a.bias_in_qkv else ''}"
          f"{torch.cuda.get_device_name()} torch {torch.__version__}")
    for r in rows:
        print(f"  fwd+bwd {r['variant']:<58} {r['ms']:8.3f} ms   x{ms_stock / r['ms']:.2f} vs stock")
    for r in fwd_rows:
        print(f"  fwd     {r['variant']:<58} {r['ms']:8.3f} ms   x{ms_fwd_stock / r['ms']:.2f} vs stock")
    for name, e in acc.items():
        print(f"  accuracy {name:<7} vs fp64: out {e['out_max_abs_err']:.2e}, dqkv {e['dqkv_max_abs_err']:.2e}, "
              f"dbias rel {e['dbias_max_rel_err']:.2e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"shape": dict(k=k, b=b, t=t, d=d, heads=nh), "rows": rows + fwd_rows,
                       "accuracy": acc, "device": torch.cuda.get_device_name(), "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
