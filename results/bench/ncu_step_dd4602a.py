# one uncaptured K = 5, B = 256 training step (after one warm-up step), for ncu to profile chosen kernels
import torch
from pyphase.config import RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer
K, B = 5, 256
cfgs = [RunConfig(experiment="p", batch_size=B, lr=1e-3 * (i + 1), gradient_clip=1.0, seed=i, steps=400,
                  eval_interval=10**6, eval_windows=4) for i in range(K)]
tr = PackTrainer(cfgs, load_corpus(None), "cuda", compile=False)
torch.cuda.cudart().cudaProfilerStop()
tr._step(); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
tr._step(); torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
print("done")
