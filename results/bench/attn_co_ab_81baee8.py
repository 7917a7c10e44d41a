"""phase3a's packs side by side in one CUDA graph (B = 128 and 256, K = 5 each) with the attention
backward's two passes in one grid at several lags (PYPHASE_ATTN_CO, `attention._attn_bwd_co_kernel`): ms a round and joules a round
(NVML) at the power cap, variants interleaved, several rounds. argv: rounds, calls a window[, names]."""
import gc, importlib.util, os, sys
import torch
spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec); spec.loader.exec_module(bt)
from pyphase.train import PackTrainer, capture_steps, precompile_together
V = {"base": "0", "co64": "64", "co128": "128", "co256": "256", "co512": "512",
     "bn64": "0/32,64,128,32,4,3", "co96_bn64": "96/32,64,128,32,4,3", "co128_bn64": "128/32,64,128,32,4,3",
     "co192_bn64": "192/32,64,128,32,4,3"}
from pyphase import attention
bwd0 = attention.CONFIG["bwd"]
names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(V)
rounds, calls = int(sys.argv[1]), int(sys.argv[2])
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
bt.METER = bt.Meter.open(dev)
for name in names:
    print(f"{name:13}: PYPHASE_ATTN_CO[/attention.CONFIG[bwd]]={V[name]}", flush=True)
for rnd in range(rounds):
    for name in names:
        lag, _, bwd = V[name].partition("/")
        os.environ["PYPHASE_ATTN_CO"] = lag
        attention.CONFIG["bwd"] = tuple(int(v) for v in bwd.split(",")) if bwd else bwd0
        try:
            trainers = [PackTrainer([bt._cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, calls + 200, shape) for i in range(5)], corpus, "cuda")
                        for b in (128, 256)]
            precompile_together(trainers)
            for t in trainers:
                t.capture()
            g = capture_steps(trainers)
            e = {}
            rate = bt._rate(g.replay, calls, 30, dev, e)
            bits = int(sum(int(t.model.flat.view(torch.int32).to(torch.int64).sum()) for t in trainers))
            print(f"round {rnd} {name:13}: {1000 / rate:.3f} ms a round, {e['joules_per_call']:.4f} J a round, {e['watts']:.0f} W, "
                  f"SM {e['sm_mhz']:.0f} MHz, capped {e['power_capped']:.0%}, weights' bit sum {bits}", flush=True)
        except Exception as ex:
            print(f"round {rnd} {name:13}: failed: {str(ex).splitlines()[0][:200]}", flush=True)
        trainers = g = None
        gc.collect(); torch.cuda.empty_cache()
