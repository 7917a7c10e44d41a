"""The training step with pyphase's defaults against one environment switch set otherwise (e.g.
PYPHASE_ATTN_MASK=all: the attention kernels masking every tile, as before session 18).

phase3a's packs (K models at each of `--batches`, d 128, 4 layers, 4 heads, context 256, the
phase's learning rates), built twice, once each way (the switch is read while the kernels are
launched, so each way's CUDA graphs hold that way's kernels): each pack alone and all packs side by
side in one graph (as `pyphase train` runs phase3a). The graphs are replayed in turn and timed with
CUDA events (best of the rounds). Both ways start from the same parameters and batches; a switch
that changes no value must leave the losses, gradient norms, parameters and moments equal bit for
bit after the timed replays, and the bench says whether they are. CUDA only. Usage:
    python benches/bench_switch.py --env PYPHASE_ATTN_MASK=all --k 5 --batches 128,256 --steps 100 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence

import torch

from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, capture_steps, precompile_together

from kernel_bench import replay_ms  # noqa: E402  (benches/ is the script's own folder)


def main(argv: Sequence[str] | None = None, doc: str = __doc__, env: str | None = None,
         names: tuple[str, str] = ("default", "switched"),
         check: Callable[[PackTrainer, bool], bool] | None = None) -> None:
    """The bench; `env` fixes the switch (else --env), `names` name the two ways, `check(trainer,
    switched)` asserts a trainer was built the intended way."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PYPHASE_DATA"))
    if env is None:
        ap.add_argument("--env", required=True, help="NAME=VALUE, the switch of the second way")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("this bench needs CUDA")
    key, _, value = (env or a.env).partition("=")
    corpus = load_corpus(a.data)
    shape = ModelShape(d_model=128, n_layer=4, n_head=4, block_size=256)
    lrs = [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5][: a.k]
    batches = [int(b) for b in a.batches.split(",")]
    total = a.steps * a.rounds * (len(batches) + 1) + 20
    before = os.environ.get(key)

    def set_switch(v: str | None) -> None:
        if v is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = v

    def build(switched: bool) -> tuple[list[PackTrainer], dict[str, torch.cuda.CUDAGraph]]:
        set_switch(value if switched else before)
        ts = [PackTrainer([RunConfig(experiment="bench", batch_size=b, lr=lr, gradient_clip=1.0, seed=0, steps=total,
                                     model=shape) for lr in lrs], corpus, "cuda") for b in batches]
        assert check is None or all(check(t, switched) for t in ts)
        precompile_together(ts)
        for t in ts:
            t.warm_up()
        graphs = {f"B={t.c0.batch_size}": capture_steps([t]) for t in ts}
        if len(ts) > 1:
            graphs["side by side"] = capture_steps(ts)
        return ts, graphs

    ways = {names[0]: build(False), names[1]: build(True)}
    set_switch(before)
    results = []
    for name in ways[names[0]][1]:
        for _, gs in ways.values():
            replay_ms(gs[name], 5)  # warm
        ms: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(a.rounds):
            for w, (_, gs) in ways.items():
                ms[w].append(replay_ms(gs[name], a.steps))
        best = {w: min(v) for w, v in ms.items()}
        speedup = best[names[1]] / best[names[0]]
        results.append({"graph": name, "k": a.k, "best_ms": best, "rounds": ms, "speedup": speedup})
        print(f"K={a.k} {name:>13}: {names[0]} {best[names[0]]:.3f} ms a step, {names[1]} {best[names[1]]:.3f} ms "
              f"(x{speedup:.3f})", flush=True)
    # Both ways replayed the same graphs the same number of times from the same start.
    same = True
    for t1, t2 in zip(ways[names[0]][0], ways[names[1]][0]):
        n = int(t1.state.t.item())
        same &= n == int(t2.state.t.item())
        for x, y in ((t1.state.loss[:n], t2.state.loss[:n]), (t1.state.norm_before[:n], t2.state.norm_before[:n]),
                     (t1.model.flat, t2.model.flat), (t1.state.m, t2.state.m), (t1.state.v, t2.state.v)):
            same &= torch.equal(x, y)
    steps = int(ways[names[0]][0][0].state.t.item())
    print(f"losses, gradient norms, parameters and moments after {steps} steps equal both ways, bit for bit: {same}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"switch": f"{key}={value}", "results": results, "bits_equal": same, "steps": steps,
                       "device": torch.cuda.get_device_name()}, f, indent=1)


if __name__ == "__main__":
    main()
