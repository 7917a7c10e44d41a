# One uncaptured K = 5, B = 256 training step of phase3a's shape (after one warm-up step) inside
# cudaProfilerStart/Stop, for `ncu --profile-from-start off` to measure every kernel of it.
import os
import torch
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer
K, B = 5, int(os.environ.get("B", "256"))
shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
cfgs = [RunConfig(experiment="p", batch_size=B, lr=lr, gradient_clip=1.0, seed=0, steps=400, model=shape,
                  eval_interval=10**6, eval_windows=4) for lr in (0.01, 0.02, 0.03, 0.05, 0.1)]
tr = PackTrainer(cfgs, load_corpus(os.environ.get("PYPHASE_DATA")), "cuda")
tr.precompile()
tr._step(); tr._step(); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
tr._step(); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
print("done", flush=True)
