"""Cold start of a pack under each compilation mode (PYPHASE_COMPILE): whole against regional.

For each mode (whole, regional, blocks, none: see `pyphase.train._compiled_losses`), in a fresh
subprocess with fresh, empty TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR (nothing reused from an
earlier compile), times what `PackTrainer.run` does before training, in its order:
  construct    PackTrainer(...): model init, data to the device
  first step   CUDA: capture() (compile in the first warm-up step, 2 more warm-ups, graph capture)
               plus the first replay; CPU: the first step (compile + one step)
    _step      of which the first `_step` alone (compile + one step)
    dynamo     torch.compile's own timer of its compiles (trace, AOTAutograd, Inductor); with the
               batch dynamic the backward is compiled with the forward and counts here
    backward   Inductor's backward compile (part of the above when the batch is dynamic)
  first eval   the first evaluation (uncompiled in every mode)
  setup        construct + first step + first eval
then the steady-state ms/step over --steps steps (synchronised), and, unless --b2 0, a second pack
of another batch size in the same process, as a sweep runs its packs (phase3a: B = 128, then 256):
its first step shows whether anything recompiles. Prints medians over --repeat runs per mode and
ratios to the first mode. Usage:
    python benches/bench_compile.py [--device cuda] [--data PATH] [--k 5] [--b 128] [--b2 256]
        [--steps 100] [--repeat 1] [--modes whole,regional,blocks] [--json out.json]
CPU check of this script (tiny shape):
    python benches/bench_compile.py --device cpu --k 2 --b 4 --b2 8 --steps 5 --d-model 32 \
        --n-layer 2 --n-head 2 --block-size 32 --eval-windows 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("whole", "regional", "blocks", "none")
# (key, label): the table's rows, seconds unless named ms
ROWS = [("construct_s", "construct (s)"), ("first_step_s", "first step: compile+capture (s)"),
        ("compile_s", "  first _step alone (s)"), ("dynamo_s", "  dynamo compile timer (s)"),
        ("bw_compile_s", "  inductor backward compile (s)"), ("first_eval_s", "first eval (s)"),
        ("setup_s", "setup total (s)"), ("ms_per_step", "steady ms/step"), ("graphs", "dynamo graphs"),
        ("ops", "dynamo ops traced (all graphs)"),
        ("construct2_s", "pack 2: construct (s)"), ("first_step2_s", "pack 2: first step (s)"),
        ("graphs2", "pack 2: dynamo graphs (total)"), ("ms_per_step2", "pack 2: steady ms/step")]


def _sync(dev) -> None:  # type: ignore[no-untyped-def]
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time_pack(a: argparse.Namespace, corpus, b: int, suffix: str) -> dict:  # type: ignore[no-untyped-def]
    """Build one pack of batch size `b` and time its start and steady state (see the docstring)."""
    import torch
    from torch._dynamo.utils import compilation_time_metrics, counters

    from pyphase.config import ModelShape, RunConfig
    from pyphase.train import PackTrainer

    dev = torch.device(a.device)
    shape = ModelShape(d_model=a.d_model, n_layer=a.n_layer, n_head=a.n_head, block_size=a.block_size)
    warmup = 3
    cfgs = [RunConfig(experiment="bench", batch_size=b, lr=10 ** (-3 + 0.25 * i), gradient_clip=1.0, seed=i,
                      steps=a.steps + warmup + 2, eval_interval=10**9, eval_windows=a.eval_windows, model=shape)
            for i in range(a.k)]

    def metrics(key: str) -> float:
        return sum(compilation_time_metrics.get(key, []))

    dyn0, bw0 = metrics("_compile.compile_inner"), metrics("compile_fx.<locals>.bw_compiler")
    r: dict = {}
    t0 = time.perf_counter()
    tr = PackTrainer(cfgs, corpus, str(dev), compile=os.environ["PYPHASE_COMPILE"] != "none")
    _sync(dev)
    r["construct"] = time.perf_counter() - t0
    # The first `_step` (the one that compiles), timed inside capture(): not while capturing.
    step, first = tr._step, []

    def timed_step() -> None:
        t = time.perf_counter()
        step()
        if not first and not (dev.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            _sync(dev)
            first.append(time.perf_counter() - t)

    tr._step = timed_step  # type: ignore[method-assign]
    t0 = time.perf_counter()
    if tr.use_graph:
        tr.capture()
        _sync(dev)
        t_eval = time.perf_counter()
        tr.evaluate()
        r["first_eval"] = time.perf_counter() - t_eval
        t1 = time.perf_counter()
        tr.step()
        _sync(dev)
        r["first_step"] = (t_eval - t0) + (time.perf_counter() - t1)
    else:  # as run() orders it: evaluation before the first step
        tr.evaluate()
        r["first_eval"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        tr.step()
        _sync(dev)
        r["first_step"] = time.perf_counter() - t1
    tr._step = step  # type: ignore[method-assign]
    r["compile"] = first[0] if first else float("nan")
    r["dynamo"] = metrics("_compile.compile_inner") - dyn0
    r["bw_compile"] = metrics("compile_fx.<locals>.bw_compiler") - bw0
    r["setup"] = r["construct"] + r["first_step"] + r["first_eval"]
    r["graphs"], r["ops"] = counters["stats"]["unique_graphs"], counters["stats"]["calls_captured"]
    for _ in range(warmup):
        tr.step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        tr.step()
    _sync(dev)
    ms = 1e3 * (time.perf_counter() - t0) / a.steps
    loss = tr.state.loss[int(tr.state.t) - 1].tolist()  # the last step's losses: the modes should agree
    out = {f"{k}{suffix}" if k in ("graphs", "ops") else f"{k}{suffix}_s": v for k, v in r.items()}
    out[f"ms_per_step{suffix}"] = ms
    out[f"loss{suffix}"] = loss
    return out


def child(a: argparse.Namespace) -> None:
    """One mode, in this (fresh) process; prints its results as one JSON line."""
    import torch

    from pyphase.data import load_corpus

    corpus = load_corpus(a.data)
    res = {"mode": os.environ["PYPHASE_COMPILE"], "torch": torch.__version__,
           "device": torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else "cpu"}
    res |= _time_pack(a, corpus, a.b, "")
    if a.b2:
        res |= _time_pack(a, corpus, a.b2, "2")
    print("RESULT " + json.dumps(res), flush=True)


def run_mode(mode: str, argv: list[str]) -> dict:
    """Run `child` for `mode` in a fresh interpreter with empty compile caches."""
    tmp = tempfile.mkdtemp(prefix=f"bench_compile_{mode}_")
    env = os.environ | {"PYPHASE_COMPILE": mode, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor"),
                        "TRITON_CACHE_DIR": os.path.join(tmp, "triton")}
    try:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, stdout=subprocess.PIPE, text=True,
                           check=False)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        sys.exit(f"{mode}: child failed (exit {p.returncode}):\n{p.stdout}")
    return json.loads(lines[-1][len("RESULT "):]) | {"process_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default=None, help="text file or corpus folder (default: the embedded synthetic corpus)")
    ap.add_argument("--k", type=int, default=5, help="configs in the pack")
    ap.add_argument("--b", type=int, default=128, help="batch size")
    ap.add_argument("--b2", type=int, default=256, help="batch size of a second pack in the same process (0: none)")
    ap.add_argument("--steps", type=int, default=100, help="steps timed for the steady state")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode (alternating); the table shows medians")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
            if k not in ("json", "child", "modes", "repeat") and v is not None]
    modes = a.modes.split(",")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for i in range(a.repeat):
        for m in modes:
            r = run_mode(m, argv)
            runs[m].append(r)
            print(f"[{i + 1}/{a.repeat}] {m}: setup {r['setup_s']:.2f} s, first step {r['first_step_s']:.2f} s, "
                  f"{r['ms_per_step']:.2f} ms/step (process {r['process_wall_s']:.1f} s)", flush=True)
    med = {m: {k: statistics.median_low([r[k] for r in rs]) for k, _ in ROWS if k in rs[0]} for m, rs in runs.items()}
    r0 = runs[modes[0]][0]
    print(f"\ndevice={r0['device']} torch={r0['torch']} K={a.k} B={a.b}" + (f" B2={a.b2}" if a.b2 else "")
          + f" shape=d{a.d_model}/L{a.n_layer}/H{a.n_head}/T{a.block_size} steps={a.steps} repeat={a.repeat}"
          + f" data={a.data or 'synthetic'}")
    base, w = modes[0], max(12, *(len(m) + 2 for m in modes))
    print(f"{'':38s}" + "".join(f"{m:>{w}s}" for m in modes) + "".join(f"{m + '/' + base:>20s}" for m in modes[1:]))
    for key, label in ROWS:
        if key not in med[base]:
            continue
        vals = [med[m][key] for m in modes]
        ratios = [f"{v / vals[0]:20.3f}" if vals[0] and key not in ("graphs", "graphs2") else f"{'':20s}"
                  for v in vals[1:]]
        print(f"{label:38s}" + "".join(f"{v:{w}.3f}" if isinstance(v, float) else f"{v:{w}d}" for v in vals)
              + "".join(ratios))
    for m in modes:
        print(f"{m}: losses at the last step {[round(x, 4) for x in runs[m][0]['loss']]}")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "json"}, "median": med,
                                      "runs": runs}, indent=2, default=str))


if __name__ == "__main__":
    main()
