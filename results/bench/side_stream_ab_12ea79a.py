"""A/B of pyphase.side (weight gradients on a side stream) for phase3a's two packs side by side.

One process: the packs (B = 128 and 256, K = 5, phase3a's LRs) built once; for each variant
(PYPHASE_SIDE_STREAM=0 / 1) the packs' steps captured in one graph (capture_steps); rounds/s
measured alternately; then each variant trained N steps from the same state and the flat
parameters and losses compared bit for bit. Also one pack alone (B = 256) for both variants."""
import os, sys, time, json
import torch
from dataclasses import replace
from pyphase.config import ModelShape, RunConfig, load_experiment
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, capture_steps, precompile_together

steps_timed = int(sys.argv[1]) if len(sys.argv) > 1 else 200
exp = load_experiment("phase3a")
corpus = load_corpus(None)
cfgs = exp.configs
print("configs", len(cfgs), flush=True)
packs = {}
for c in cfgs:
    packs.setdefault(c.batch_size, []).append(c)
trainers = [PackTrainer(packs[b], corpus, "cuda") for b in sorted(packs)]
precompile_together(trainers)
for t in trainers:
    t.warm_up()

def rate(fn, n, warm=20):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)

graphs = {}
for v in ("0", "1"):
    os.environ["PYPHASE_SIDE_STREAM"] = v
    for t in trainers:
        t.warm_up()
    graphs[("both", v)] = capture_steps(trainers)
    graphs[("256", v)] = capture_steps(trainers[1:])
    graphs[("128", v)] = capture_steps(trainers[:1])
snaps = [t._snapshot() for t in trainers]
res = {}
for rnd in range(3):
    for v in ("0", "1"):
        for what in ("both", "256", "128"):
            r = rate(graphs[(what, v)].replay, steps_timed)
            res.setdefault(f"{what} side={v}", []).append(r)
            print(f"round {rnd} {what:4s} side={v}: {r:8.2f} rounds/s ({1000 / r:.3f} ms)", flush=True)
for t, s in zip(trainers, snaps):
    t._restore(*s)
# bits: N steps of each variant from the same state
out = {}
for v in ("0", "1"):
    for t, s in zip(trainers, snaps):
        t._restore(*s)
    for _ in range(60):
        graphs[("both", v)].replay()
    torch.cuda.synchronize()
    out[v] = [(t.model.flat.clone(), t.state.loss.clone()) for t in trainers]
same = all(torch.equal(a[0], b[0]) and torch.equal(torch.nan_to_num(a[1], nan=-1.0), torch.nan_to_num(b[1], nan=-1.0))
           for a, b in zip(out["0"], out["1"]))
print("bit for bit after 60 steps (flat parameters and losses):", same, flush=True)
print(json.dumps({k: sorted(v) for k, v in res.items()}))
