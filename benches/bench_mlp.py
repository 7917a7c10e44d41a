"""The packed MLP as pyphase.mlp's fused Triton kernels against the stock path.

Times forward + backward of gelu(h @ w1 + b1) @ w2 for K packed models, bf16, for
  stock     bmm, bias + GELU, bmm under torch.compile (what `pyphase train` ran before pyphase.mlp)
  triton    pyphase.mlp.gelu_mlp for each launch configuration given (rows per tile, hidden units
            per chunk, warps, stages) for both kernels, or "FWD/BWD" for separate ones, where BWD
            may be "torch" (the backward pass in torch ops, compiled) or start with "split:"
            (pyphase.mlp.set_config reads them)
and the forward alone (backward = the difference), with each kernel's registers and spills. CUDA only:
    python benches/bench_mlp.py --k 5 --b 256 --configs "128,64,8,2;64,64,4,3/split:64,32,4,3" [--json PATH]
A fifth number 0 in a backward configuration computes the bias gradient as a torch sum; a
configuration that fails (e.g. out of shared memory) is reported and skipped.
"""
from __future__ import annotations

import torch

from pyphase import mlp
from pyphase.mlp import gelu_mlp, gelu_mlp_reference

from kernel_bench import Table, config_list, failed, parser  # noqa: E402  (benches/ is the script's own folder)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--ratio", type=int, default=4)
    a = ap.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    k, n, d, f = a.k, a.b * a.t, a.d, a.ratio * a.d
    h = torch.randn(k, n, d, device=dev, generator=g).bfloat16().requires_grad_()
    w1 = (torch.randn(k, d, f, device=dev, generator=g) * 0.1).bfloat16().requires_grad_()
    b1 = (torch.randn(k, f, device=dev, generator=g) * 0.5).bfloat16().requires_grad_()
    w2 = (torch.randn(k, f, d, device=dev, generator=g) * 0.05).bfloat16().requires_grad_()
    dy = torch.randn(k, n, d, device=dev, generator=g).bfloat16()
    ins = (h, w1, b1, w2)

    def fused(*z):
        return gelu_mlp(*z, use_triton=True)

    def both(fn):
        def step():
            torch.autograd.grad(fn(*ins), ins, dy)
        return step

    print(f"GELU MLP fwd+bwd, K={k} N={n} d={d} hidden={f}, bf16, {torch.cuda.get_device_name()} torch {torch.__version__}")
    table = Table(a.iters, width=32)
    stock = torch.compile(gelu_mlp_reference, dynamic=False)
    table.measure("stock (compiled)", both(stock), lambda: stock(*ins))
    base = dict(mlp.CONFIG)
    fused_c = torch.compile(fused, dynamic=False)
    for c in config_list(a.configs, mlp.config_spec()):
        try:
            # "FWD" or "FWD/BWD" launch configurations → timings and register/spill counts
            mlp.set_config(c)
            torch._dynamo.reset()
            fn = fused_c if mlp.CONFIG["bwd_mode"] == "torch" else fused  # the torch-op backward is meant to be compiled
            mlp.LAST.clear()
            r = table.measure(f"triton {c}", both(fn), lambda: fused(*ins))
        except Exception as e:  # noqa: BLE001 - e.g. a launch configuration out of shared memory
            failed(c, e)
            continue
        r["regs_spills"] = {kind: [getattr(ck, "n_regs", None), getattr(ck, "n_spills", None)]
                            for kind, ck in mlp.LAST.items()}
        print(f"      registers/spills per kernel: {r['regs_spills']}", flush=True)
    mlp.CONFIG.clear()
    mlp.CONFIG.update(base)
    table.write_json(a.json, dict(k=k, n=n, d=d, hidden=f))


if __name__ == "__main__":
    main()
