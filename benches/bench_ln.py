"""Residual add + LayerNorm as pyphase.layernorm's Triton op against the compiled stock path.

Times forward + backward of `x + (r + rb)` and its LayerNorm for K packed models (x fp32, r bf16,
output bf16 as under autocast; the gradients of x, r, rb, w, b) for
  stock     add_ln_reference under torch.compile (what `PYPHASE_LN=torch` runs)
  triton    pyphase.layernorm.add_ln for each launch configuration "FWD/BWD": FWD "rows,warps",
            BWD "rows,tiles per program,warps" (pyphase.layernorm.CONFIG)
and the forward alone (backward = the difference). CUDA only:
    python benches/bench_ln.py --k 5 --b 256 --configs "32,4/32,8,4;16,4/16,16,4" [--json PATH]
A configuration that fails is reported and skipped.
"""
from __future__ import annotations

import torch

from pyphase import layernorm
from pyphase.layernorm import add_ln, add_ln_reference

from kernel_bench import Table, config_list, failed, parser  # noqa: E402  (benches/ is the script's own folder)


def main() -> None:
    a = parser(__doc__).parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, n, d = a.k, a.b * a.t, a.d
    x = torch.randn(k, n, d, device=dev, generator=g).requires_grad_()
    r = torch.randn(k, n, d, device=dev, generator=g).bfloat16().requires_grad_()
    rb, w, b = (torch.randn(k, d, device=dev, generator=g).requires_grad_() for _ in range(3))
    dxn = torch.randn(k, n, d, device=dev, generator=g)
    dh = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    ins = (x, r, rb, w, b)

    def stock_fn(*z):
        xn, h = add_ln_reference(*z)
        return xn, h.to(torch.bfloat16)

    def fused(*z):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return add_ln(*z, use_triton=True)

    def both(fn):
        def step():
            xn, h = fn(*ins)
            torch.autograd.grad((xn, h), ins, (dxn, dh))
        return step

    print(f"add + LayerNorm fwd+bwd, K={k} N={n} d={d}, {torch.cuda.get_device_name()} torch {torch.__version__}")
    table = Table(a.iters)
    stock = torch.compile(stock_fn, dynamic=False)
    table.measure("stock (compiled)", both(stock), lambda: stock(*ins))
    base = dict(layernorm.CONFIG)
    for c in config_list(a.configs, "/".join(",".join(map(str, v)) for v in base.values())):
        try:
            fc, _, bc = c.partition("/")
            layernorm.CONFIG.update(fwd=tuple(int(v) for v in fc.split(",")),
                                    bwd=tuple(int(v) for v in bc.split(",")) if bc else base["bwd"])
            table.measure(f"triton {c}", both(fused), lambda: fused(*ins))
        except Exception as e:  # noqa: BLE001 - e.g. a launch configuration out of resources
            failed(c, e)
    layernorm.CONFIG.update(base)
    table.write_json(a.json, dict(k=k, n=n, d=d))


if __name__ == "__main__":
    main()
