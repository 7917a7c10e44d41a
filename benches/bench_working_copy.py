"""The training step with the weights' working copy (`pyphase.packing`, the default) against the
weights rounded where they are used (PYPHASE_WORKING_COPY=0, pyphase before session 17).

phase3a's packs (K models at each of `--batches`, d 128, 4 layers, 4 heads, context 256, the
phase's learning rates), built twice, once each way; each way's step is captured in a CUDA graph:
each pack alone and all packs side by side in one graph (as `pyphase train` runs phase3a). The
graphs are replayed in turn and timed with CUDA events (best of the rounds). Both ways start from
the same parameters and batches, so after the timed replays the losses, gradient norms and
parameters must agree bit for bit. CUDA only. Usage:
    python benches/bench_working_copy.py --data PATH --k 5 --batches 128,256 --steps 100 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, capture_steps, precompile_together

from kernel_bench import replay_ms  # noqa: E402  (benches/ is the script's own folder)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default=os.environ.get("PYPHASE_DATA"))
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--batches", default="128,256")
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--json", default=None)
a = ap.parse_args()
if not torch.cuda.is_available():
    raise SystemExit("bench_working_copy.py needs CUDA")
corpus = load_corpus(a.data)
shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
lrs = [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5][: a.k]
batches = [int(b) for b in a.batches.split(",")]
total = a.steps * a.rounds * (len(batches) + 1) + 20


def build(working: bool) -> tuple[list[PackTrainer], dict[str, torch.cuda.CUDAGraph]]:
    os.environ["PYPHASE_WORKING_COPY"] = "1" if working else "0"
    ts = [PackTrainer([RunConfig(experiment="bench", batch_size=b, lr=lr, gradient_clip=1.0, seed=0, steps=total,
                                 model=shape) for lr in lrs], corpus, "cuda") for b in batches]
    assert all((t.working is not None) == working for t in ts)
    precompile_together(ts)
    for t in ts:
        t.warm_up()
    graphs = {f"B={t.c0.batch_size}": capture_steps([t]) for t in ts}
    if len(ts) > 1:
        graphs["side by side"] = capture_steps(ts)
    return ts, graphs


ways = {"working copy": build(True), "cast where used": build(False)}
os.environ.pop("PYPHASE_WORKING_COPY")


results = []
for name in ways["working copy"][1]:
    for _, gs in ways.values():
        replay_ms(gs[name], 5)  # warm
    ms: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(a.rounds):
        for w, (_, gs) in ways.items():
            ms[w].append(replay_ms(gs[name], a.steps))
    best = {w: min(v) for w, v in ms.items()}
    results.append({"graph": name, "k": a.k, "best_ms": best, "rounds": ms,
                    "speedup": best["cast where used"] / best["working copy"]})
    print(f"K={a.k} {name:>13}: working copy {best['working copy']:.3f} ms a step, cast where used "
          f"{best['cast where used']:.3f} ms (x{best['cast where used'] / best['working copy']:.3f})", flush=True)
# Both ways replayed the same graphs the same number of times from the same start.
same = True
for t1, t2 in zip(ways["working copy"][0], ways["cast where used"][0]):
    n = int(t1.state.t.item())
    same &= n == int(t2.state.t.item())
    for x, y in ((t1.state.loss[:n], t2.state.loss[:n]), (t1.state.norm_before[:n], t2.state.norm_before[:n]),
                 (t1.model.flat, t2.model.flat), (t1.state.m, t2.state.m), (t1.state.v, t2.state.v)):
        same &= torch.equal(x, y)
steps = int(ways["working copy"][0][0].state.t.item())
print(f"losses, gradient norms, parameters and moments after {steps} steps equal both ways, bit for bit: {same}")
if a.json:
    with open(a.json, "w") as f:
        json.dump({"results": results, "bits_equal": same, "steps": steps, "device": torch.cuda.get_device_name()},
                  f, indent=1)
