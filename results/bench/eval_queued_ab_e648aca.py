"""Device idle time of evaluations in the training loop: phase3a's two packs side by side (one CUDA
graph), 1,000 steps with an evaluation of both packs every 100 steps, evaluated (a) as before
e648aca, read back at once (`evaluate`, a host sync), (b) queued (`_evaluate_queued`, read back at
the end), and (c) without evaluations; rounds alternate."""
import os, sys, time
import torch
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, capture_steps, precompile_together

corpus = load_corpus(os.environ["PYPHASE_DATA"])
shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
lrs = [0.01, 0.02, 0.03, 0.05, 0.1]
steps, every, rounds = 1000, 100, 2
ts = [PackTrainer([RunConfig(experiment="bench", batch_size=b, lr=lr, gradient_clip=1.0, seed=0, steps=steps * 3 * rounds + 50,
                             model=shape, eval_windows=128) for lr in lrs], corpus, "cuda") for b in (128, 256)]
precompile_together(ts)
for t in ts:
    t.warm_up()
    t.evaluate()
g = capture_steps(ts)
for _ in range(20):
    g.replay()
torch.cuda.synchronize()


def run(mode):
    queued = []
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for n in range(1, steps + 1):
        g.replay()
        if n % every == 0 and mode != "none":
            for t in ts:
                if mode == "sync":
                    t.evaluate()
                else:
                    queued.append(t._evaluate_queued())
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if queued:
        torch.stack([torch.stack(q) for q in queued]).tolist()
    return dt


res = {m: [] for m in ("none", "sync", "queued")}
for r in range(rounds):
    for m in res:
        res[m].append(run(m))
        print(f"round {r} {m:>6}: {res[m][-1]:.3f} s for {steps} steps", flush=True)
best = {m: min(v) for m, v in res.items()}
n_evals = steps // every
print(f"best: {best}; per evaluation point (both packs): sync {1000 * (best['sync'] - best['none']) / n_evals:.1f} ms, "
      f"queued {1000 * (best['queued'] - best['none']) / n_evals:.1f} ms over no evaluation")
