"""Packs side by side in one CUDA graph with and without stream priorities (`train.capture_steps`).

phase3a's two packs (K models at B = 128 and at B = 256, d 128, 4 layers, 4 heads, context 256,
the phase's learning rates), their joint step captured in one CUDA graph per priority mode: "none"
(both streams at the default priority, pyphase before session 17), "heavy" (the B = 256 pack on a
high-priority stream, the B = 128 pack filling in) and "light" (the other way round). The graphs
are replayed in turn and timed with CUDA events (best of the rounds); each is also replayed alone,
for the packs one after the other. Then every mode steps the same start (restored snapshot) a few
times and the packs' losses, gradient norms and parameters must equal mode "none"'s bit for bit:
priorities change when kernels run, not what they compute. CUDA only. Usage:
    python benches/bench_pack_priority.py --data PATH --k 5 --steps 100 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PACK_PRIORITIES, PackTrainer, capture_steps, precompile_together

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default=os.environ.get("PYPHASE_DATA"))
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--batches", default="128,256")
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--check-steps", type=int, default=20)
ap.add_argument("--json", default=None)
a = ap.parse_args()
if not torch.cuda.is_available():
    raise SystemExit("bench_pack_priority.py needs CUDA")
corpus = load_corpus(a.data)
shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
lrs = [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5][: a.k]
batches = [int(b) for b in a.batches.split(",")]
total = a.steps * a.rounds * (len(PACK_PRIORITIES) + 2) + 5 * 8 + a.check_steps * 4 + 10
trainers = [PackTrainer([RunConfig(experiment="bench", batch_size=b, lr=lr, gradient_clip=1.0, seed=0, steps=total,
                                   model=shape) for lr in lrs], corpus, "cuda") for b in batches]
precompile_together(trainers)
for t in trainers:
    t.warm_up()
graphs = {m: capture_steps(trainers, priority=m) for m in PACK_PRIORITIES}
alone = [capture_steps([t]) for t in trainers]


def timed(gs: list[torch.cuda.CUDAGraph], n: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        for g in gs:
            g.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


variants = {**{m: [g] for m, g in graphs.items()}, "one after the other": alone}
for gs in variants.values():
    timed(gs, 5)  # warm
ms: dict[str, list[float]] = {name: [] for name in variants}
for _ in range(a.rounds):
    for name, gs in variants.items():
        ms[name].append(timed(gs, a.steps))
best = {name: min(v) for name, v in ms.items()}
tokens = a.k * sum(batches) * shape.block_size
for name in variants:
    print(f"K={a.k} B={'+'.join(map(str, batches))} {name:>20}: {best[name]:.3f} ms a joint step "
          f"({tokens / best[name] / 1e3:.2f} M tok/s; x{best['none'] / best[name]:.3f} against 'none'; "
          f"rounds {', '.join(f'{x:.3f}' for x in ms[name])})", flush=True)

# The same start, each mode: the same bits.
snaps = [t._snapshot() for t in trainers]
ref = None
same = {}
for m, g in graphs.items():
    for t, s in zip(trainers, snaps):
        t._restore(*s)
    for _ in range(a.check_steps):
        g.replay()
    torch.cuda.synchronize()
    n = int(trainers[0].state.t.item())
    got = [(t.state.loss[:n].clone(), t.state.norm_before[:n].clone(), t.model.flat.clone()) for t in trainers]
    if ref is None:
        ref = got
    same[m] = all(torch.equal(x, y) for r, o in zip(ref, got) for x, y in zip(r, o))
    print(f"priority {m!r}: {a.check_steps} steps from the same start, losses, norms and parameters equal to "
          f"'none' bit for bit: {same[m]}", flush=True)
if a.json:
    with open(a.json, "w") as f:
        json.dump({"k": a.k, "batches": batches, "steps": a.steps, "rounds": ms, "best_ms": best,
                   "bits_equal_to_none": same, "device": torch.cuda.get_device_name()}, f, indent=1)
