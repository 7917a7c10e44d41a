"""phase3a's packs side by side in one CUDA graph (B = 128 and 256, K = 5 each) with the attention
backward launch of 3361ae5 (32, 128, 128, 32, 4, 3) and that of 4518b8e (32, 64, 64, 32, 4, 3):
ms a round, alternating, and the losses after 220 rounds."""
import gc
import importlib.util

import torch

from pyphase import attention

spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bt)
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
base = dict(attention.CONFIG)
for rnd in range(3):
    for name, bwd in (("(32,128,128,32,4,3) now", base["bwd"]), ("(32,64,64,32,4,3) 4518b8e", (32, 64, 64, 32, 4, 3))):
        attention.CONFIG.update(base, bwd=bwd)
        side, apart = bt.bench_together(corpus, [(128, 5), (256, 5)], 200, 20, shape, dev)
        print(f"round {rnd} {name}: {1000 / side:.3f} ms a round side by side, {1000 / apart:.3f} ms one after the other", flush=True)
        gc.collect()
        torch.cuda.empty_cache()
