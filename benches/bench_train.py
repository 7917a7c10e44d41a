"""Training speed: the plain PyTorch loop a user would write against pyphase, in one run.

(a) plain: eager fp32 NanoTransformer, torch.optim.AdamW, clip_grad_norm_, nanoGPT-style CPU batch
    sampling and a `.item()` sync per step (how seed 000 most likely trained);
(b) pyphase, one config: packed trainer with K = 1 (bf16, whole step in a CUDA graph, its Triton
    kernels; torch.compile as the trainer's PYPHASE_COMPILE says, or forced by --compile/--no-compile);
(c) pyphase, packed: K configs of one batch size as one model (as a phase sweep packs them);
(d) pyphase, packs side by side: packs of several batch sizes (phase3a's two by default) stepped by
    one CUDA graph, each on its own stream (as `pyphase train` runs them on CUDA), against the same
    packs one after the other, each replaying its own graph.

Prints steps/s, tokens/s, model-FLOP utilisation (6N + 12·L·d·T FLOP per token against 989 TFLOP/s
bf16 dense on H100) and ratios to (a); also the share of step time spent gathering batches (on
CUDA timed inside a CUDA graph, as the step runs it) and the bf16-vs-fp32 loss difference. On CUDA,
where NVML can be read (`gpu_meter.py`), each timed loop's energy per million tokens, mean power,
mean SM clock and the share of the time the board was held at its power cap: on the H100 the packed
step runs at the 700 W limit with the SM clock lowered, so its speed depends on its energy. Usage:
    python benches/bench_train.py --device cuda --data PATH [--batches 32,128,256] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpu_meter import Meter
from kernel_bench import capture
from pyphase.config import ModelShape, RunConfig
from pyphase.data import load_corpus
from pyphase.model import NanoTransformer, Shape
from pyphase.train import PackTrainer, capture_steps, precompile_together

PEAK_BF16 = 989e12  # H100 SXM dense bf16, the MFU denominator the trainer issue names
METER: Meter | None = None  # set by main on CUDA where NVML can be read


def _cfg(b: int, lr: float, clip: float | None, seed: int, steps: int, shape: ModelShape) -> RunConfig:
    return RunConfig(experiment="bench", batch_size=b, lr=lr, gradient_clip=clip, seed=seed,
                     steps=steps, eval_interval=10**9, eval_windows=4, model=shape)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_plain(corpus, b: int, steps: int, warmup: int, shape: ModelShape, dev: torch.device,
                energy: dict[str, float] | None = None) -> float:
    """Steps/s of the plain eager fp32 loop with per-step host syncs."""
    s = Shape.of(shape, corpus.tokenizer.vocab_size)
    model = NanoTransformer(s, seed=0).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.from_numpy(corpus.train.astype(np.int64))
    t = shape.block_size

    def get_batch():
        ix = torch.randint(len(data) - t - 1, (b,))
        x = torch.stack([data[i : i + t] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + t] for i in ix])
        return x.to(dev), y.to(dev)

    def one():
        x, y = get_batch()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item(), norm.item()

    return _rate(one, steps, warmup, dev, energy)


def _rate(fn: Any, calls: int, warmup: int, dev: torch.device, energy: dict[str, float] | None = None) -> float:
    """Calls of `fn` per second, after `warmup` calls, device work included. With a METER and an
    `energy` dict, the meter's window (`gpu_meter.Meter.window`) and the joules per call go in it."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    with METER.window() if METER is not None and energy is not None else nullcontext({}) as stats:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(dev)
        rate = calls / (time.perf_counter() - t0)
    if stats:  # filled as the window closed
        energy.update(stats, joules_per_call=stats["joules"] / calls)
    return rate


def bench_pyphase(corpus, b: int, k: int, steps: int, warmup: int, shape: ModelShape, dev: torch.device,
                  compile: bool, energy: dict[str, float] | None = None) -> tuple[float, float, float]:
    """(steps/s of the pack, gather share of step time, setup seconds incl. compile and capture)."""
    t_setup = time.perf_counter()
    cfgs = [_cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, steps + warmup + 3, shape) for i in range(k)]
    tr = PackTrainer(cfgs, corpus, str(dev), compile=compile)
    if dev.type == "cuda":
        tr.capture()
    for _ in range(warmup):
        tr.step()
    _sync(dev)
    setup = time.perf_counter() - t_setup
    dt = 1.0 / _rate(tr.step, steps, 0, dev, energy)
    # Gather alone, same shapes, same indexing as the step; on CUDA captured in a graph as in the
    # step (ten gathers a replay), so the host's launch overhead, which the step's graph does not
    # pay, is not counted.
    tt = torch.zeros((), dtype=torch.int64, device=dev)
    def gather():
        off = tr.offsets.index_select(0, tt.view(1))[0]
        return tr.tokens[off[..., None] + tr.window]
    per_call = 1
    if dev.type == "cuda":
        per_call = 10
        run = capture(gather, per_call).replay
    else:
        run = gather
    g = 1.0 / (_rate(run, steps, 5, dev) * per_call)
    return 1.0 / dt, g / dt, setup


def bench_together(corpus, packs: list[tuple[int, int]], steps: int, warmup: int, shape: ModelShape,
                   dev: torch.device, energy: tuple[dict[str, float], dict[str, float]] | None = None
                   ) -> tuple[float, float]:
    """(rounds/s side by side, rounds/s one after the other): a round is one step of every pack."""
    n = 2 * (steps + warmup) + 10
    trainers = [PackTrainer([_cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, n, shape) for i in range(k)], corpus, str(dev))
                for b, k in packs]
    precompile_together(trainers)
    for t in trainers:
        t.capture()
    together = capture_steps(trainers)

    side = _rate(together.replay, steps, warmup // 2, dev, energy[0] if energy else None)
    apart = _rate(lambda: [t.step() for t in trainers], steps, warmup // 2, dev, energy[1] if energy else None)
    return side, apart


def bf16_loss_gap(corpus, b: int, shape: ModelShape, dev: torch.device) -> float:
    """Relative difference of one batch's loss in bf16 autocast against fp32, after 30 bf16 steps."""
    tr = PackTrainer([_cfg(b, 3e-3, 1.0, 0, 40, shape)], corpus, str(dev), compile=False, cuda_graph=False)
    for _ in range(30):
        tr.step()
    x, y = tr.val_x[:8][None], tr.val_y[:8][None]
    from pyphase.model import packed_losses
    with torch.no_grad():
        l32 = packed_losses(tr.shape, tr.model._leaf, x, y).double()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            l16 = packed_losses(tr.shape, tr.model._leaf, x, y).double()
    return float(((l16 - l32).abs() / l32.abs()).max())


def _energy_row(e: dict[str, float], tokens_per_call: int) -> dict[str, float]:
    """A row's energy columns from `_rate`'s dict (empty without a meter): joules per million
    tokens, watts, mean SM clock (MHz), share of the time at the power cap."""
    if not e:
        return {}
    return dict(joules_per_mtok=e["joules_per_call"] / tokens_per_call * 1e6, watts=e["watts"], sm_mhz=e["sm_mhz"],
                power_capped=e["power_capped"])


def _energy_text(r: dict[str, Any]) -> str:
    if "joules_per_mtok" not in r:
        return ""
    return (f"  {r['joules_per_mtok']:7.1f} J/Mtok  {r['watts']:5.0f} W  SM {r['sm_mhz']:4.0f} MHz  "
            f"power cap {100 * r['power_capped']:3.0f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", default=None)
    ap.add_argument("--batches", default="32,128,256")
    ap.add_argument("--packs", default="7,5,5", help="K for the packed variant, per batch size")
    ap.add_argument("--together", default="128:5,256:5",
                    help="packs B:K stepped side by side in one CUDA graph (CUDA only; '' to skip)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke of this script)")
    ap.add_argument("--compile", dest="compile", action="store_true", default=None,
                    help="force torch.compile (default: the trainer's own choice, PYPHASE_COMPILE)")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    global METER
    METER = Meter.open(dev)
    corpus = load_corpus(a.data)
    shape = ModelShape(d_model=32, n_layer=1, n_head=2, block_size=32) if a.tiny else ModelShape()
    s = Shape.of(shape, corpus.tokenizer.vocab_size)
    fpt = s.flops_per_token()
    compile = a.compile
    rows = []
    print(f"device={torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'} torch={torch.__version__} "
          f"params={s.n_params} flops/token={fpt:.3e} compile={compile}", flush=True)
    for b, k in zip(map(int, a.batches.split(",")), map(int, a.packs.split(","))):
        tok = b * shape.block_size
        en: list[dict[str, float]] = [{}, {}, {}]
        plain = bench_plain(corpus, b, max(20, a.steps // 4), 5, shape, dev, en[0])
        single, g1, setup1 = bench_pyphase(corpus, b, 1, a.steps, a.warmup, shape, dev, compile, en[1])
        packed, gk, setupk = bench_pyphase(corpus, b, k, a.steps, a.warmup, shape, dev, compile, en[2])
        for (name, kk, sps, gshare, setup), e in zip((("plain", 1, plain, math.nan, 0.0), ("pyphase", 1, single, g1, setup1),
                                                      ("packed", k, packed, gk, setupk)), en):
            tps = sps * kk * tok
            rows.append(dict(batch=b, variant=name, k=kk, steps_per_s=sps, tokens_per_s=tps,
                             mfu=tps * fpt / PEAK_BF16, vs_plain=tps / (plain * tok), gather_share=gshare,
                             setup_s=setup, **_energy_row(e, kk * tok)))
            r = rows[-1]
            print(f"B={b:4d} {name:8s} K={kk}  {sps:8.1f} steps/s  {tps/1e6:8.2f} Mtok/s  MFU {100*r['mfu']:5.1f}%  "
                  f"x{r['vs_plain']:5.1f} vs plain  gather {100*gshare:4.1f}%  setup {setup:5.1f}s{_energy_text(r)}",
                  flush=True)
    together = [tuple(map(int, p.split(":"))) for p in a.together.split(",") if p] if dev.type == "cuda" else []
    if together:
        en_side: dict[str, float] = {}
        en_apart: dict[str, float] = {}
        side, apart = bench_together(corpus, together, a.steps, a.warmup, shape, dev, (en_side, en_apart))
        tok = sum(b * k for b, k in together) * shape.block_size  # tokens of one round
        plain_tps = {r["batch"]: r["tokens_per_s"] for r in rows if r["variant"] == "plain"}
        # the plain loop's time for the same tokens, batch size by batch size (where this run measured it)
        plain_s = sum(b * k * shape.block_size / plain_tps.get(b, math.nan) for b, k in together)
        name = "+".join(str(b) for b, _ in together)
        for variant, rps, e in (("apart", apart, en_apart), ("together", side, en_side)):
            tps = rps * tok
            rows.append(dict(batch=name, variant=variant, k="+".join(str(k) for _, k in together), steps_per_s=rps,
                             tokens_per_s=tps, mfu=tps * fpt / PEAK_BF16, vs_plain=plain_s * rps, gather_share=math.nan,
                             setup_s=math.nan, **_energy_row(e, tok)))
            print(f"B={name} {variant:8s} K={rows[-1]['k']}  {rps:8.1f} rounds/s  {tps/1e6:8.2f} Mtok/s  "
                  f"MFU {100 * rows[-1]['mfu']:5.1f}%  x{rows[-1]['vs_plain']:5.1f} vs plain{_energy_text(rows[-1])}",
                  flush=True)
        print(f"side by side: x{side / apart:.3f} the rounds/s of the same packs one after the other", flush=True)
    if dev.type == "cuda":
        gap = bf16_loss_gap(corpus, 32, shape, dev)
        print(f"bf16 vs fp32 loss, relative difference after 30 steps: {gap:.2e}")
        os.environ["PYPHASE_RESIDUAL"] = "bf16"  # the opt-in bf16 residual stream (pyphase.model)
        gap_res = bf16_loss_gap(corpus, 32, shape, dev)
        del os.environ["PYPHASE_RESIDUAL"]
        print(f"  with PYPHASE_RESIDUAL=bf16: {gap_res:.2e}")
    else:  # bf16 autocast runs on CUDA only: on the CPU both runs would be fp32, a "gap" of 0 that says nothing
        gap = gap_res = math.nan
        print("bf16 vs fp32 loss: n/a on the CPU (bf16 autocast runs on CUDA only)")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "bf16_rel_gap": gap if math.isfinite(gap) else None,
                                      "bf16_residual_rel_gap": gap_res if math.isfinite(gap_res) else None,
                                      "torch": torch.__version__,
                                      "device": str(dev)}, indent=2))


if __name__ == "__main__":
    main()
