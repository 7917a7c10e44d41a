"""phase3a's packs side by side in one CUDA graph (B = 128 and 256, K = 5 each) under launch-configuration
variants that move fewer bytes through L2 or DRAM for some more latency: ms a round and joules a round
(NVML) at the power cap, variants interleaved, several rounds. argv: rounds, calls a window."""
import gc, importlib.util, os, sys
import torch
spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec); spec.loader.exec_module(bt)
from pyphase import mlp, mlp_block, kernels
from pyphase.train import PackTrainer, capture_steps, precompile_together
V = {"base": {},
     "bf16res": {"env": ("PYPHASE_RESIDUAL", "bf16")},
     "span8192": {"mlp": "64,32,4,2/dw:64,32,4,3,8192"},
     "nostage": {"block": "64,64,4,3/1,1,0"},
     "blk128": {"block": "128,32,8,3,168/1,1,1"},
     "blk128s2": {"block": "128,32,8,2,168/1,1,1"}}
names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(V)
rounds, calls = int(sys.argv[1]), int(sys.argv[2])
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
bt.METER = bt.Meter.open(dev)
blk0 = dict(mlp_block.CONFIG); mlp0 = dict(mlp.CONFIG)
print("base configs", blk0, mlp0, flush=True)
for rnd in range(rounds):
    for name in names:
        v = V[name]
        mlp_block.CONFIG.clear(); mlp_block.CONFIG.update(blk0); mlp.CONFIG.clear(); mlp.CONFIG.update(mlp0)
        os.environ.pop("PYPHASE_RESIDUAL", None)
        if "block" in v: mlp_block.set_config(v["block"])
        if "mlp" in v: mlp.set_config(v["mlp"])
        if "env" in v: os.environ[v["env"][0]] = v["env"][1]
        try:
            trainers = [PackTrainer([bt._cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, calls + 200, shape) for i in range(5)], corpus, "cuda")
                        for b in (128, 256)]
            precompile_together(trainers)
            for t in trainers:
                t.capture()
            g = capture_steps(trainers)
            e = {}
            rate = bt._rate(g.replay, calls, 30, dev, e)
            print(f"round {rnd} {name:9}: {1000 / rate:.3f} ms a round, {e['joules_per_call']:.4f} J a round, {e['watts']:.0f} W, "
                  f"SM {e['sm_mhz']:.0f} MHz, capped {e['power_capped']:.0%}", flush=True)
        except Exception as ex:  # a launch that does not fit
            print(f"round {rnd} {name:9}: failed: {str(ex).splitlines()[0][:200]}", flush=True)
        trainers = g = None
        gc.collect(); torch.cuda.empty_cache()
