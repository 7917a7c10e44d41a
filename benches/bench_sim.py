"""Speed of the Rust NQM engine against vectorized numpy implementations of the same model (every
config × seed as one array, the same noise structure, the same torch arithmetic), in the same
process on the same grid, plus `pyphase predict --clip 1.0` end to end.

Two numpy baselines: "plain" writes the update as expressions (what one would write first:
temporaries allocated per operation), "in-place" reuses preallocated arrays through out= and
in-place operators (what one would write after profiling).

    python3 benches/bench_sim.py                      # default grid: AdamW, clip 1.0, 5000 steps, f32
    python3 benches/bench_sim.py --precision both     # also f64 (the numpy runs take minutes)

Prints wall and CPU seconds of each, the ratios, and the largest difference of seed-mean final loss
and clip frequency between Rust and numpy in units of their Monte-Carlo standard error (the two draw
different random numbers; |z| of a few over 52 configs says they simulate the same model).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from pyphase import _core
from pyphase.nqm import NQMParams
from pyphase.predict import (
    DEFAULT_BATCHES,
    DEFAULT_LR_GRID,
    OptimizerSettings,
    parse_lr_grid,
)


def grid(batches, lrs, clip):
    bs = [b for b in batches for _ in lrs]
    return bs, [lr for _ in batches for lr in lrs], [clip] * len(bs)


def run_rust(params: NQMParams, bs, lrs, clips, seeds: int, steps: int, precision: str, s: OptimizerSettings):
    return _core.simulate(**params.core_kwargs(), batch_size=bs, lr=lrs, clip=clips, seeds=list(range(seeds)),
                          steps=steps, optimizer="adamw", betas=s.betas, eps=s.eps, weight_decay=s.weight_decay,
                          precision=precision)


def run_numpy(params: NQMParams, bs, lrs, clip: float, seeds: int, steps: int, dtype, s: OptimizerSettings):
    """Clipped AdamW and its unclipped twin on the NQM, all (config, seed) rows at once, in place.
    Same model as the engine: CRN noise (one draw per seed and step, shared by every config),
    torch's clip_grad_norm_ and AdamW formulas, final loss = mean over the last 10% of steps."""
    desc = _core.nqm_describe(**params.core_kwargs())
    h = desc["spectrum"].astype(dtype)
    sqrt_h = np.sqrt(desc["spectrum"]).astype(dtype)
    n_cfg, d = len(bs), params.d
    n = n_cfg * seeds
    rng = np.random.default_rng(0)
    mu = np.repeat(np.sqrt(params.sigma2 / np.asarray(bs, float)), seeds).astype(dtype)[:, None]
    lr = np.repeat(np.asarray(lrs, float), seeds)[:, None]
    theta = np.tile(desc["theta0"].astype(dtype), (n, 1))
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    theta2, m2, v2 = theta.copy(), m.copy(), v.copy()
    g, g2, tmp, noise = (np.empty_like(theta) for _ in range(4))
    clipped = np.zeros(n)
    norm_sum = np.zeros(n)
    upd, upd2 = np.zeros(n), np.zeros(n)
    final = np.zeros(n)
    n_last = max(1, steps // 10)
    b1, b2 = s.betas
    decay = (1 - lr * s.weight_decay).astype(dtype)
    for t in range(1, steps + 1):
        z = rng.standard_normal((seeds, d), dtype=dtype) * sqrt_h
        np.multiply(mu.reshape(n_cfg, seeds, 1), z[None], out=noise.reshape(n_cfg, seeds, d))
        np.multiply(h, theta, out=g)
        if t - 1 >= steps - n_last + 1:  # L(θ_{t-1}); the window is θ_t for the last n_last t
            final += 0.5 * np.einsum("ij,ij->i", g, theta)
        g += noise
        np.multiply(h, theta2, out=g2)
        g2 += noise
        norm = np.sqrt(np.einsum("ij,ij->i", g, g))
        clipped += norm > clip
        norm_sum += norm
        g *= np.minimum(1.0, clip / (norm + 1e-6)).astype(dtype)[:, None]
        bc1, bc2s = 1 - b1**t, np.sqrt(1 - b2**t)
        step = (lr / bc1).astype(dtype)
        for th, mm, vv, gg, acc in ((theta, m, v, g, upd), (theta2, m2, v2, g2, upd2)):
            np.copyto(tmp, th)
            th *= decay
            mm += (1 - b1) * (gg - mm)
            vv *= b2
            np.multiply(gg, gg, out=gg)
            gg *= 1 - b2
            vv += gg
            np.sqrt(vv, out=gg)
            gg *= 1 / bc2s
            gg += s.eps
            np.divide(mm, gg, out=gg)
            gg *= step
            th -= gg
            np.subtract(th, tmp, out=tmp)
            acc += np.einsum("ij,ij->i", tmp, tmp)
    final += 0.5 * np.einsum("ij,ij->i", h * theta, theta)  # θ_steps
    final = params.loss_floor + final / n_last
    return {"final_loss": final, "clip_frequency": clipped / steps, "grad_norm_before": norm_sum / steps,
            "effective_lr": lr[:, 0] * np.sqrt(upd / upd2)}


def run_numpy_plain(params: NQMParams, bs, lrs, clip: float, seeds: int, steps: int, dtype,
                    s: OptimizerSettings):
    """The same simulation as `run_numpy`, written as plain array expressions."""
    desc = _core.nqm_describe(**params.core_kwargs())
    h = desc["spectrum"].astype(dtype)
    sqrt_h = np.sqrt(desc["spectrum"]).astype(dtype)
    n_cfg, d = len(bs), params.d
    n = n_cfg * seeds
    rng = np.random.default_rng(0)
    mu = np.sqrt(params.sigma2 / np.asarray(bs, float)).astype(dtype)[:, None, None]
    lr = np.repeat(np.asarray(lrs, float), seeds)[:, None].astype(dtype)
    theta = np.tile(desc["theta0"].astype(dtype), (n, 1))
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    theta2, m2, v2 = theta.copy(), m.copy(), v.copy()
    b1, b2 = s.betas
    n_last = max(1, steps // 10)
    clipped, norm_sum, upd, upd2, final = (np.zeros(n) for _ in range(5))

    def adamw(th, mm, vv, g, t):
        mm = b1 * mm + (1 - b1) * g
        vv = b2 * vv + (1 - b2) * g * g
        new = th * (1 - lr * s.weight_decay) - lr / (1 - b1**t) * mm / (np.sqrt(vv) / np.sqrt(1 - b2**t) + s.eps)
        return new, mm, vv

    for t in range(1, steps + 1):
        noise = (mu * (sqrt_h * rng.standard_normal((seeds, d), dtype=dtype))[None]).reshape(n, d)
        if t - 1 >= steps - n_last + 1:
            final += 0.5 * (h * theta**2).sum(axis=1)
        g = h * theta + noise
        norm = np.sqrt((g**2).sum(axis=1))
        clipped += norm > clip
        norm_sum += norm
        g = g * np.minimum(1.0, clip / (norm + 1e-6)).astype(dtype)[:, None]
        new, m, v = adamw(theta, m, v, g, t)
        upd += ((new - theta) ** 2).sum(axis=1)
        theta = new
        new2, m2, v2 = adamw(theta2, m2, v2, h * theta2 + noise, t)
        upd2 += ((new2 - theta2) ** 2).sum(axis=1)
        theta2 = new2
    final += 0.5 * (h * theta**2).sum(axis=1)
    return {"final_loss": params.loss_floor + final / n_last, "clip_frequency": clipped / steps,
            "grad_norm_before": norm_sum / steps, "effective_lr": lr[:, 0] * np.sqrt(upd / upd2)}


def max_z(a: np.ndarray, b: np.ndarray, seeds: int) -> float:
    """Largest |difference of seed means| / its standard error over the configs."""
    a, b = a.reshape(-1, seeds), b.reshape(-1, seeds)
    se = np.sqrt(a.var(axis=1, ddof=1) / seeds + b.var(axis=1, ddof=1) / seeds)
    diff = np.abs(a.mean(axis=1) - b.mean(axis=1))
    return float(np.max(np.where(se > 0, diff / np.where(se > 0, se, 1), 0.0)))


def timed(fn, *args):
    """fn(*args) with its wall and CPU (process) seconds."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--precision", choices=["f32", "f64", "both"], default="f32")
    ap.add_argument("--skip-cli", action="store_true", help="do not time `pyphase predict --clip 1.0`")
    a = ap.parse_args()

    params = NQMParams.default()
    settings = OptimizerSettings.trainer_defaults()
    lrs_grid = parse_lr_grid(DEFAULT_LR_GRID)
    bs, lrs, clips = grid(DEFAULT_BATCHES, lrs_grid, a.clip)
    n = len(bs) * a.seeds
    print(f"grid: AdamW, clip {a.clip}, B {list(DEFAULT_BATCHES)} x {len(lrs_grid)} LRs x {a.seeds} seeds = {n} "
          f"trajectories (+ {n} unclipped twins), {a.steps} steps, d = {params.d} ({params.source} NQM)")
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.2f}")
    precisions = ["f32", "f64"] if a.precision == "both" else [a.precision]
    for prec in precisions:
        dtype = np.float32 if prec == "f32" else np.float64
        rust, rw, rc = timed(run_rust, params, bs, lrs, clips, a.seeds, a.steps, prec, settings)
        print(f"[{prec}] rust            : wall {rw:7.2f} s  cpu {rc:7.2f} s")
        for name, fn in (("numpy in-place", run_numpy), ("numpy plain", run_numpy_plain)):
            nump, nw, nc = timed(fn, params, bs, lrs, a.clip, a.seeds, a.steps, dtype, settings)
            print(f"[{prec}] {name:16s}: wall {nw:7.2f} s  cpu {nc:7.2f} s   rust is {nw / rw:5.1f}x faster "
                  f"(wall), {nc / rc:5.1f}x per core (cpu time);  same model: max |z| final loss "
                  f"{max_z(rust['final_loss'], nump['final_loss'], a.seeds):.1f}, clip frequency "
                  f"{max_z(rust['clip_frequency'], nump['clip_frequency'], a.seeds):.1f}")
    if not a.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pyphase", "predict", "--clip", "1.0", "--out", tmp]
            w = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - w
        status = "ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[-200:]}"
        print(f"`pyphase predict --clip 1.0` end to end (interpreter start, simulation, bootstrap, files): "
              f"wall {wall:.2f} s ({status})")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
