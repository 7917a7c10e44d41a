"""Device A/B: the packed K = 5 training step (captured, eager kernels) with pyphase.mlp_block's
forward launched per spec (`mlp_block.set_config`; "default" = CONFIG as committed). Prints ms per
step, the fused kernel's registers and spills, and the losses at step 160 (bits)."""
import json, sys, time
import torch
from pyphase import attention, mlp_block
from pyphase.config import RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer

corpus = load_corpus(None)
K = 5
base = dict(mlp_block.CONFIG)
abase = dict(attention.CONFIG)
for B in map(int, sys.argv[1].split(",")):
    for spec in sys.argv[2].split(";"):
        mlp_block.CONFIG.clear(); mlp_block.CONFIG.update(base)
        attention.CONFIG.clear(); attention.CONFIG.update(abase)
        bspec, _, cap = spec.partition("@")
        if bspec != "default":
            mlp_block.set_config(bspec)
        if cap:
            attention.CONFIG["maxnreg"] = tuple(int(v) for v in cap.split(","))
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
        kern = mlp_block.LAST.get("fwd")
        dk = {kn.fn.__name__: sorted({(ck.n_regs, ck.n_spills) for c in kn.device_caches.values()
                                      for ck in (c[0] if isinstance(c, tuple) else c).values() if getattr(ck, "n_regs", None) is not None})
              for kn in (attention._attn_fwd_kernel, attention._attn_bwd_dq_kernel, attention._attn_bwd_dkdv_kernel)}
        print(json.dumps(dict(B=B, spec=spec, config={k: v for k, v in mlp_block.CONFIG.items()}, ms=round(dt * 1e3, 3),
                              regs=getattr(kern, "n_regs", None), spills=getattr(kern, "n_spills", None), dkdv_regs_spills=dk,
                              loss160=tr.state.loss[159].tolist())), flush=True)
        del tr
        torch.cuda.empty_cache()
