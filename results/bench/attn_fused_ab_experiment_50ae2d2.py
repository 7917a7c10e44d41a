"""Device A/B of the one-pass attention backward (attention.CONFIG["bwd_fused"]) against the two
passes: (1) the backward op alone at K = 5, T = 256, d = 128, 4 heads (ms, dqkv equal bit for bit
to the two passes?, bias gradient's max relative difference); (2) the packed K = 5 training step
(captured), ms and losses at step 160. Specs: "default" or "f:BM,BN,BD,WARPS,STAGES[@CAP]"."""
import json, sys, time
import torch
from pyphase import attention
from pyphase.config import RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer

base = dict(attention.CONFIG)


def setspec(spec):
    attention.CONFIG.clear(); attention.CONFIG.update(base)
    if spec != "default":
        f, _, cap = spec[2:].partition("@")
        attention.CONFIG["bwd_fused"] = tuple(int(v) for v in f.split(","))
        attention.CONFIG["maxnreg"] = base["maxnreg"][:3] + (int(cap or 0),)


def regs():
    kn = attention._attn_bwd_kernel
    return sorted({(ck.n_regs, ck.n_spills) for c in kn.device_caches.values()
                   for ck in (c[0] if isinstance(c, tuple) else c).values() if getattr(ck, "n_regs", None) is not None})


Bs = [int(b) for b in sys.argv[1].split(",")]
specs = sys.argv[2].split(";")
step_specs = sys.argv[3].split(";") if len(sys.argv) > 3 else specs
K, T, nh, d = 5, 256, 4, 128
for B in Bs:
    g = torch.Generator(device="cuda").manual_seed(B)
    qkv = torch.randn(K, B * T, 3 * d, device="cuda", generator=g).to(torch.bfloat16)
    bias = (torch.randn(K, 3 * d, device="cuda", generator=g) * 0.5).to(torch.bfloat16)
    o, lse = attention._attn_fwd(qkv, bias, B, T, nh, True)
    do = (torch.randn(K, B * T, d, device="cuda", generator=g) * 0.1).to(torch.bfloat16)
    ref = None
    for spec in specs:
        setspec(spec)
        f = lambda: attention._attn_bwd(do, qkv, bias, o, lse, B, T, nh, True)
        dq, db = f()
        torch.cuda.synchronize()
        if ref is None:
            ref = (dq.clone(), db.clone())
        for _ in range(5):
            f()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(50):
            f()
        e1.record(); torch.cuda.synchronize()
        rel = ((db - ref[1]).abs().max() / ref[1].abs().max()).item()
        print(json.dumps(dict(part="op", B=B, spec=spec, ms=round(e0.elapsed_time(e1) / 50, 4),
                              dqkv_equal=bool(torch.equal(dq, ref[0])), dq_equal=bool(torch.equal(dq[..., :d], ref[0][..., :d])),
                              dkv_equal=bool(torch.equal(dq[..., d:], ref[0][..., d:])), dbias_rel=rel,
                              regs=regs() if spec != "default" else None)), flush=True)
    del qkv, o, lse, do, ref
corpus = load_corpus(None)
for B in Bs:
    for spec in step_specs:
        setspec(spec)
        cfgs = [RunConfig(experiment="p", batch_size=B, lr=1e-3 * (i + 1), gradient_clip=1.0, seed=i, steps=400,
                          eval_interval=10 ** 6, eval_windows=4) for i in range(K)]
        tr = PackTrainer(cfgs, corpus, "cuda", compile=False)
        tr.capture()
        for _ in range(10):
            tr.step()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(150):
            tr.step()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / 150
        print(json.dumps(dict(part="step", B=B, spec=spec, ms=round(dt * 1e3, 3), loss160=tr.state.loss[159].tolist())), flush=True)
        del tr
        torch.cuda.empty_cache()
setspec("default")
