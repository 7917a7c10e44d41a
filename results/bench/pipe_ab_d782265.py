"""phase3a's packs side by side in one CUDA graph (B = 128 and 256, K = 5 each), ms a round, with the
MLP kernels' one-ahead pipelining off and on (PYPHASE_MLP_PIPE: the MLP-half forward; PYPHASE_DW_PIPE:
the "dw" backward, "1" piped at 2 stages, "s2" unpiped at 2 stages), alternating, three rounds."""
import gc
import importlib.util
import os
import sys

import torch

spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bt)
corpus, shape, dev = bt.load_corpus(None), bt.ModelShape(), torch.device("cuda")
variants = [v.split("+") if v else [] for v in sys.argv[1].split(",")]
for rnd in range(3):
    for env in variants:
        for key in ("PYPHASE_MLP_PIPE", "PYPHASE_DW_PIPE"):
            os.environ.pop(key, None)
        os.environ.update(kv.partition("=")[::2] for kv in env)
        side, apart = bt.bench_together(corpus, [(128, 5), (256, 5)], 200, 20, shape, dev)
        print(f"round {rnd} {'+'.join(env) or 'base'}: {1000 / side:.3f} ms a round side by side, "
              f"{1000 / apart:.3f} ms one after the other", flush=True)
        gc.collect()
        torch.cuda.empty_cache()
