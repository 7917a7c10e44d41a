"""Packs side by side in one CUDA graph, in other orders and splits: ms a round (one step of every pack)."""
import gc
import importlib.util

import torch

spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bt)
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
variants = {"128:5,256:5 (phase3a's)": [(128, 5), (256, 5)], "256:5,128:5": [(256, 5), (128, 5)],
            "128:5,256:3,256:2": [(128, 5), (256, 3), (256, 2)], "256:5,128:3,128:2": [(256, 5), (128, 3), (128, 2)]}
for rnd in range(2):
    for name, packs in variants.items():
        side, apart = bt.bench_together(corpus, packs, 200, 20, shape, dev)
        print(f"round {rnd} {name}: {1000 / side:.3f} ms a round side by side, {1000 / apart:.3f} ms one after the other",
              flush=True)
        gc.collect()
        torch.cuda.empty_cache()
