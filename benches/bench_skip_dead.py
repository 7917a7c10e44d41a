"""Step time of a pack with diverged (frozen) models: the kernels skip them (`kernels.skipping_dead`)
against the same pack computing them anyway (PYPHASE_SKIP_DEAD=0, pyphase before session 16).

One pack of phase3a's shape (K models, batch B, d 128, 4 layers, 4 heads, context 256), its step
captured in a CUDA graph twice, once with skipping and once without; for 0, 1, ... models marked
dead (their `alive` entry cleared, as a divergence does), both graphs are replayed alternately and
timed with CUDA events. Also checks that the live models' step is the same either way: the losses
of the live models after the timed replays, bit for bit. CUDA only. Usage:
    python benches/bench_skip_dead.py --data PATH --k 5 --b 256 --steps 100
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, capture_steps

from kernel_bench import replay_ms  # noqa: E402  (benches/ is the script's own folder)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default=os.environ.get("PYPHASE_DATA"))
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--b", type=int, default=256)
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--json", default=None)
a = ap.parse_args()
if not torch.cuda.is_available():
    raise SystemExit("bench_skip_dead.py needs CUDA")
corpus = load_corpus(a.data)
shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
lrs = [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5][: a.k]
configs = [RunConfig(experiment="bench", batch_size=a.b, lr=lr, gradient_clip=1.0, seed=0, steps=a.steps * a.rounds * 8 + 10,
                     model=shape) for lr in lrs]


def trainer() -> tuple[PackTrainer, torch.cuda.CUDAGraph]:
    t = PackTrainer(configs, corpus, "cuda")
    t.precompile()
    t.warm_up()
    return t, capture_steps([t])


os.environ["PYPHASE_SKIP_DEAD"] = "1"
on = trainer()
os.environ["PYPHASE_SKIP_DEAD"] = "0"
off = trainer()
os.environ.pop("PYPHASE_SKIP_DEAD")


results = []
for dead in range(0, a.k):
    for t, _ in (on, off):
        t.state.alive.fill_(True)
        if dead:
            t.state.alive[a.k - dead:] = False  # the highest learning rates, as in phase3a
    for _, g in (on, off):
        replay_ms(g, 5)  # warm
    ms = {"on": [], "off": []}
    for _ in range(a.rounds):
        for name, (_, g) in (("on", on), ("off", off)):
            ms[name].append(replay_ms(g, a.steps))
    best = {k: min(v) for k, v in ms.items()}
    results.append({"k": a.k, "b": a.b, "dead": dead, "ms_skip": best["on"], "ms_noskip": best["off"],
                    "ratio": best["on"] / best["off"], "rounds_skip": ms["on"], "rounds_noskip": ms["off"]})
    print(f"K={a.k} B={a.b} dead={dead}: skipping {best['on']:.3f} ms a step, computing them {best['off']:.3f} ms "
          f"(x{best['off'] / best['on']:.3f}; ideal for the skipped kernels alone x{a.k / (a.k - dead):.3f})", flush=True)
# Both trainers replayed the same steps from the same start: the live models' per-step losses must agree.
ton, toff = on[0], off[0]
n = int(ton.state.t.item())
live = slice(0, 1)  # model 0 was never marked dead
same = torch.equal(ton.state.loss[:n, live], toff.state.loss[:n, live]) and int(toff.state.t.item()) == n
print(f"live model's losses over {n} steps equal with and without skipping: {same}")
if a.json:
    with open(a.json, "w") as f:
        json.dump({"results": results, "live_losses_equal": same, "steps_replayed": n}, f, indent=1)
