"""Output head + cross-entropy as pyphase.head's Triton op against the compiled and eager stock path.

Times forward + backward of the per-row cross-entropy of h @ W for K packed models (h bf16 as under
autocast, W fp32 (K, d, V); the gradients of h and W) for
  stock     head_ce_reference under torch.compile (the head of `PYPHASE_HEAD=torch`)
  eager     head_ce_reference uncompiled
  triton    pyphase.head.head_ce for each launch configuration "FWD/BWD": FWD "rows,warps",
            BWD "rows,tiles per program,warps" (pyphase.head.CONFIG)
and the forward alone (backward = the difference). CUDA only:
    python benches/bench_head.py --k 5 --b 256 --v 65 --configs "64,4/64,8,8;32,4/32,16,4" [--json PATH]
A configuration that fails is reported and skipped.
"""
from __future__ import annotations

import argparse
import json

import torch

from pyphase import head
from pyphase.head import head_ce, head_ce_reference

from bench_attention import timed  # noqa: E402  (benches/ is the script's own folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--t", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--v", type=int, default=65)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--configs", default="")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, n, d, v = a.k, a.b * a.t, a.d, a.v
    h = torch.randn(k, n, d, device=dev, generator=g).bfloat16().requires_grad_()
    w = (torch.randn(k, d, v, device=dev, generator=g) * 0.1).requires_grad_()
    t = torch.randint(0, v, (k, n), device=dev, generator=g)
    dl = torch.full((k, n), 1.0 / n, device=dev)

    def run(fn):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return fn(h, w, t)

    def both(fn):
        def step():
            torch.autograd.grad(run(fn), (h, w), dl)
        return step

    stock = torch.compile(head_ce_reference, dynamic=False)
    print(f"head + cross-entropy fwd+bwd, K={k} N={n} d={d} V={v}, {torch.cuda.get_device_name()} torch {torch.__version__}")
    rows = []

    def measure(name, fn):
        r = {"variant": name, "fwd+bwd_ms": timed(both(fn), a.iters)}
        with torch.no_grad():
            r["fwd_ms"] = timed(lambda: run(fn), a.iters)
        rows.append(r)
        print(f"  {r['variant']:<28} fwd+bwd {r['fwd+bwd_ms']:7.3f} ms (x{rows[0]['fwd+bwd_ms'] / r['fwd+bwd_ms']:.2f})"
              f"   fwd {r['fwd_ms']:7.3f} ms (x{rows[0]['fwd_ms'] / r['fwd_ms']:.2f})"
              f"   bwd {r['fwd+bwd_ms'] - r['fwd_ms']:7.3f} ms", flush=True)

    measure("stock (compiled)", stock)
    measure("stock (eager)", head_ce_reference)
    base = dict(head.CONFIG)
    for c in [c for c in a.configs.split(";") if c.strip()] or ["/".join(",".join(map(str, x)) for x in base.values())]:
        try:
            fc, _, bc = c.partition("/")
            head.CONFIG.update(fwd=tuple(int(x) for x in fc.split(",")),
                               bwd=tuple(int(x) for x in bc.split(",")) if bc else base["bwd"])
            measure(f"triton {c.strip()}", lambda *z: head_ce(*z, use_triton=True))
        except Exception as e:  # noqa: BLE001 - e.g. a launch configuration out of resources
            print(f"  triton {c.strip()}: failed: {str(e).splitlines()[0][:160]}", flush=True)
    head.CONFIG.update(base)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"shape": dict(k=k, n=n, d=d, v=v), "rows": rows, "device": torch.cuda.get_device_name(),
                       "torch": torch.__version__}, fh, indent=1)


if __name__ == "__main__":
    main()
