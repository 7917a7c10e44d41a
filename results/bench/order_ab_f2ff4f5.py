"""phase3a's packs side by side in one CUDA graph (B = 128 and 256, K = 5 each) with the kernels'
programs in other orders (PYPHASE_ORDER, `kernels.reversed_order`): ms a round and joules a round
(NVML) at the power cap, variants interleaved, several rounds. argv: rounds, calls a window[, names]."""
import gc, importlib.util, os, sys
import torch
spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec); spec.loader.exec_module(bt)
from pyphase import kernels
from pyphase.train import PackTrainer, capture_steps, precompile_together
REASON = "embed_fwd,attn_fwd,block,head_bwd,dw,ln_bwd_b,dkdv,embed_bwd"
V = {"base": "none",
     "reason": REASON,
     "inverse": ",".join(k for k in kernels.ORDER_KEYS if k not in REASON.split(",")),
     "all": ",".join(kernels.ORDER_KEYS),
     "triton_pairs": "attn_fwd,dkdv,dw"}
names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(V)
rounds, calls = int(sys.argv[1]), int(sys.argv[2])
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
bt.METER = bt.Meter.open(dev)
for name in names:
    print(f"{name:13}: PYPHASE_ORDER={V[name]}", flush=True)
for rnd in range(rounds):
    for name in names:
        os.environ["PYPHASE_ORDER"] = V[name]
        try:
            trainers = [PackTrainer([bt._cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, calls + 200, shape) for i in range(5)], corpus, "cuda")
                        for b in (128, 256)]
            precompile_together(trainers)
            for t in trainers:
                t.capture()
            g = capture_steps(trainers)
            e = {}
            rate = bt._rate(g.replay, calls, 30, dev, e)
            print(f"round {rnd} {name:13}: {1000 / rate:.3f} ms a round, {e['joules_per_call']:.4f} J a round, {e['watts']:.0f} W, "
                  f"SM {e['sm_mhz']:.0f} MHz, capped {e['power_capped']:.0%}", flush=True)
        except Exception as ex:
            print(f"round {rnd} {name:13}: failed: {str(ex).splitlines()[0][:200]}", flush=True)
        trainers = g = None
        gc.collect(); torch.cuda.empty_cache()
