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

import torch

from pyphase import head
from pyphase.head import head_ce, head_ce_reference

from kernel_bench import Table, config_list, failed, parser  # noqa: E402  (benches/ is the script's own folder)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--v", type=int, default=65)
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

    print(f"head + cross-entropy fwd+bwd, K={k} N={n} d={d} V={v}, {torch.cuda.get_device_name()} torch {torch.__version__}")
    table = Table(a.iters)
    stock = torch.compile(head_ce_reference, dynamic=False)
    table.measure("stock (compiled)", both(stock), lambda: run(stock))
    table.measure("stock (eager)", both(head_ce_reference), lambda: run(head_ce_reference))
    base = dict(head.CONFIG)

    def fused(*z):
        return head_ce(*z, use_triton=True)

    for c in config_list(a.configs, "/".join(",".join(map(str, x)) for x in base.values())):
        try:
            fc, _, bc = c.partition("/")
            head.CONFIG.update(fwd=tuple(int(x) for x in fc.split(",")),
                               bwd=tuple(int(x) for x in bc.split(",")) if bc else base["bwd"])
            table.measure(f"triton {c}", both(fused), lambda: run(fused))
        except Exception as e:  # noqa: BLE001 - e.g. a launch configuration out of resources
            failed(c, e)
    head.CONFIG.update(base)
    table.write_json(a.json, dict(k=k, n=n, d=d, v=v))


if __name__ == "__main__":
    main()
