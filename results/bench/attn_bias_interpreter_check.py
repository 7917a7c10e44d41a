import sys, importlib.util, os, time
mode = sys.argv[1]
if mode == "old":
    spec = importlib.util.spec_from_file_location("pyphase.attention", "/work/main/.dev/old/attention_890ad49.py")
    mod = importlib.util.module_from_spec(spec); sys.modules["pyphase.attention"] = mod; spec.loader.exec_module(mod)
import pyphase.attention as A
if mode != "ref":
    A.supported = lambda *a: True
import torch
from dataclasses import replace
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer
corpus = load_corpus(None)
shape = ModelShape(d_model=32, n_layer=1, n_head=2, block_size=32)
cs = [RunConfig(experiment="t", batch_size=4, lr=lr, gradient_clip=1.0, seed=i, steps=int(sys.argv[2]), eval_interval=1000, eval_windows=2, model=shape) for i, lr in enumerate([0.01, 0.05])]
tr = PackTrainer(cs, corpus, "cpu")
t0 = time.time()
for s in range(cs[0].steps):
    tr._step()
    if s % 25 == 0 or s == cs[0].steps - 1:
        i = tr.model.names.index("h0.attn_b")
        bias = tr.model.view("h0.attn_b", tr.model.flat)
        print(s, [round(v, 4) for v in tr.state.loss[s].tolist()], [round(v, 3) for v in tr.state.norm_before[s].tolist()], "bk|", round(bias[:, 32:64].abs().max().item(), 3), "bv|", round(bias[:, 64:].abs().max().item(), 3), flush=True)
print("time", time.time() - t0)
