"""Accuracy of HEAD's attention kernels and of variant B (value bias on the output) against fp64, on
phase3a-like inputs with a value bias large next to the values (as AdamW can drive it)."""
import importlib.util, sys, torch
from pyphase.attention import attention_reference, causal_attention as head_attn
# variant B with its custom ops renamed (.dev/attn_B_renamed.py (results/bench/attn_B_vbias_out_5faff51.diff applied to pyphase/attention.py, custom ops renamed cattn_b_fwd/_bwd)), so both register
spec = importlib.util.spec_from_file_location("attn_b", ".dev/attn_B_renamed.py (results/bench/attn_B_vbias_out_5faff51.diff applied to pyphase/attention.py, custom ops renamed cattn_b_fwd/_bwd)")
B = importlib.util.module_from_spec(spec)
spec.loader.exec_module(B)
dev = "cuda"
for kk, b, bscale, vscale in [(5, 32, 0.2, 1.0), (5, 32, 2.0, 0.3), (5, 32, 8.0, 0.3)]:
    t, nh, d = 256, 4, 128
    g = torch.Generator(device=dev).manual_seed(0)
    qkv = (torch.randn(kk, b * t, 3 * d, device=dev, generator=g) * vscale).bfloat16()
    bias = (torch.randn(kk, 3 * d, device=dev, generator=g) * bscale).bfloat16()
    do = (torch.randn(kk, b * t, d, device=dev, generator=g) * 1e-3).bfloat16()
    ref_in = [z.double().requires_grad_() for z in (qkv, bias)]
    ry = attention_reference(ref_in[0], ref_in[1], b, t, nh)
    rg = torch.autograd.grad(ry, ref_in, do.double())
    out = {}
    for name, fn in (("stock", lambda q, bb: attention_reference(q, bb, b, t, nh)), ("head", lambda q, bb: head_attn(q, bb, b, t, nh)),
                     ("B", lambda q, bb: B.causal_attention(q, bb, b, t, nh))):
        ins = [z.clone().requires_grad_() for z in (qkv, bias)]
        y = fn(*ins)
        gq, gb = torch.autograd.grad(y, ins, do)
        rel = lambda a, c: ((a.double() - c).abs().max() / c.abs().max()).item()
        d3 = d
        out[name] = dict(y=rel(y, ry), dq=rel(gq[..., :d3], rg[0][..., :d3]), dk=rel(gq[..., d3:2*d3], rg[0][..., d3:2*d3]),
                         dv=rel(gq[..., 2*d3:], rg[0][..., 2*d3:]), dbq=rel(gb[:, :d3], rg[1][:, :d3]), dbv=rel(gb[:, 2*d3:], rg[1][:, 2*d3:]),
                         dbk_abs=gb[:, d3:2*d3].abs().max().item())
    print(f"K={kk} B={b} |bias|~{bscale} |qkv|~{vscale}")
    for name, r in out.items():
        print(f"  {name:5s} " + " ".join(f"{k}={v:.2e}" for k, v in r.items()))
    print(f"  ref dbk max {rg[1][:, d:2*d].abs().max().item():.2e}, ref dbv max {rg[1][:, 2*d:].abs().max().item():.2e}")
