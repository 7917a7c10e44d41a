"""What a joule buys on this GPU, and how far a training step's energy sits above what its bytes and FLOPs cost.

Why: phase3a's packs train at the H100's 700 W power cap (results/bench/README.md, session 26), so a
step's time is bounded by its energy. This bench measures, with NVML's energy counter
(`gpu_meter.py`), over timed loops of a few seconds each:

  baseline  the board's power while one thread spins (`torch.cuda._sleep`): the GPU awake at its
            clocks with next to no work; the other rates are marginal, above it
  dram      a 1 GiB → 1 GiB bf16 copy: joules per byte moved to or from DRAM (read + write)
  l2        the same with 8 MiB tensors that stay in L2 (50 copies a CUDA graph): joules per byte
            through L2 that does not reach DRAM
  gemm      an 8192³ bf16 matmul (cuBLAS): joules per tensor-core FLOP
  fma       a Triton kernel of fp32 multiply-adds on registers: joules per warp instruction

With a step's measured figures (`--step-ms`, `--step-joules` from `profile_step.py`, `--step-dram-gb`
and optionally `--step-l2-gb`, `--step-inst` from Nsight Compute, `--step-tflop` counted) it
prints the step's energy split into: the baseline over the step's time, its DRAM bytes, its
FLOPs, its L2 bytes and instructions at these rates, and the rest; and a floor: the energy of the
same bytes and FLOPs done at the measured full rates (time = the slower of bytes / copy bandwidth
and FLOPs / matmul rate), baseline included. Rates come from simple kernels: another kernel's bytes
or instructions need not cost the same, so the split is an estimate, labelled as such.

Measuring needs CUDA and NVML; `--from` reads an earlier run's windows instead and runs anywhere. Usage:
    python benches/energy_floor.py [--seconds 3] [--json OUT.json | --from EARLIER.json]
        [--step-ms MS --step-joules J --step-dram-gb GB --step-tflop TF [--step-l2-gb GB] [--step-inst N]]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from gpu_meter import Meter
from kernel_bench import capture

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

FMA_ITERS = 4096

if triton is not None:
    @triton.jit
    def _fma_kernel(x_ptr, out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs)
        a = x * 0.5 + 1.0
        for _ in range(ITERS):
            # two dependent chains a program: 2 FFMA per element an iteration
            x = x * a + 0.25
            a = a * x + 0.125
        tl.store(out_ptr + offs, x + a)


def timed(meter: Meter, fn, seconds: float) -> tuple[dict[str, float], int]:
    """Run fn until `seconds` have passed (after a warm-up of a quarter of that); → (meter window, calls)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 4:
        fn()
    torch.cuda.synchronize()
    n = 0
    with meter.window() as w:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        torch.cuda.synchronize()
    return w, n


def measure(seconds: float) -> dict[str, dict[str, float]]:
    dev = torch.device("cuda")
    meter = Meter.open(dev)
    if meter is None:
        raise SystemExit("energy_floor: NVML could not be read on this device")
    out: dict[str, dict[str, float]] = {}

    def row(name: str, w: dict[str, float], work: float, unit: str) -> None:
        out[name] = dict(w, work=work, unit=unit)
        print(f"{name:9} {w['seconds']:6.2f} s {w['watts']:7.1f} W  SM {w['sm_mhz']:6.0f} MHz  capped {w['power_capped']:4.0%}  "
              f"{work / w['seconds']:.4g} {unit}/s", flush=True)

    time.sleep(1.0)
    with meter.window() as w:
        time.sleep(seconds)
    row("idle", w, 0.0, "-")

    cycles = int(2e6)  # ~1 ms at ~2 GHz a call
    w, n = timed(meter, lambda: torch.cuda._sleep(cycles), seconds)
    row("baseline", w, 0.0, "-")

    a = torch.empty(2**29, dtype=torch.bfloat16, device=dev).normal_()
    b = torch.empty_like(a)
    w, n = timed(meter, lambda: b.copy_(a), seconds)
    row("dram", w, n * 2.0 * a.numel() * a.element_size(), "B")
    del a, b

    a = torch.empty(2**22, dtype=torch.bfloat16, device=dev).normal_()
    b = torch.empty_like(a)
    reps = 50
    w, n = timed(meter, capture(lambda: b.copy_(a), reps).replay, seconds)
    row("l2", w, n * reps * 2.0 * a.numel() * a.element_size(), "B")
    del a, b

    m = 8192
    a = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    b = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    c = torch.empty(m, m, dtype=torch.bfloat16, device=dev)
    w, n = timed(meter, lambda: torch.matmul(a, b, out=c), seconds)
    row("gemm", w, n * 2.0 * m**3, "FLOP")
    del a, b, c

    if triton is not None:
        block = 1024
        programs = 16 * torch.cuda.get_device_properties(dev).multi_processor_count  # 16 a multiprocessor
        x = torch.rand(block * programs, device=dev)
        y = torch.empty_like(x)
        fn = lambda: _fma_kernel[(programs,)](x, y, ITERS=FMA_ITERS, BLOCK=block, num_warps=4)
        w, n = timed(meter, fn, seconds)
        row("fma", w, n * programs * (block // 32) * FMA_ITERS * 2.0, "warp-inst")
    return out


def rates(m: dict[str, dict[str, float]]) -> dict[str, float]:
    """Marginal joules per unit of work above the baseline power, and the full rates."""
    base = m["baseline"]["watts"]
    r = {"baseline_w": base, "idle_w": m["idle"]["watts"]}
    for name in ("dram", "l2", "gemm", "fma"):
        if name in m:
            w = m[name]
            r[f"{name}_rate"] = w["work"] / w["seconds"]
            r[f"{name}_j"] = (w["joules"] - base * w["seconds"]) / w["work"]
    return r


def split(r: dict[str, float], ms: float, joules: float, dram_gb: float, tflop: float,
          l2_gb: float | None = None, inst: float | None = None) -> dict[str, float]:
    """The step's energy by what it pays for at the rates `r` (estimates), and the bytes-and-FLOPs floor."""
    s = {"step_joules": joules, "baseline": r["baseline_w"] * ms / 1e3,
         "dram": dram_gb * 1e9 * r["dram_j"], "flops": tflop * 1e12 * r["gemm_j"]}
    if l2_gb is not None and "l2_j" in r:
        s["l2_beyond_dram"] = max(l2_gb - dram_gb, 0.0) * 1e9 * r["l2_j"]
    if inst is not None and "fma_j" in r:
        s["instructions"] = inst * r["fma_j"]
    s["rest"] = joules - sum(v for k, v in s.items() if k != "step_joules")
    t_floor = max(dram_gb * 1e9 / r["dram_rate"], tflop * 1e12 / r["gemm_rate"])
    s["floor_ms"] = t_floor * 1e3
    s["floor_joules"] = r["baseline_w"] * t_floor + s["dram"] + s["flops"]
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--from", dest="src", default=None, help="read the windows from an earlier run's --json "
                    "instead of measuring (the split for other step figures; runs without a GPU)")
    ap.add_argument("--step-ms", type=float)
    ap.add_argument("--step-joules", type=float)
    ap.add_argument("--step-dram-gb", type=float)
    ap.add_argument("--step-tflop", type=float)
    ap.add_argument("--step-l2-gb", type=float)
    ap.add_argument("--step-inst", type=float)
    args = ap.parse_args()
    if args.src:
        m = json.load(open(args.src))["windows"]
    elif not torch.cuda.is_available():
        raise SystemExit("energy_floor: needs a CUDA device (or --from an earlier run's JSON)")
    else:
        print(torch.cuda.get_device_name(), torch.__version__, flush=True)
        m = measure(args.seconds)
    r = rates(m)
    print(f"baseline {r['baseline_w']:.1f} W (idle {r['idle_w']:.1f} W); marginal: "
          f"DRAM {r['dram_j'] * 1e12:.1f} pJ/B at {r['dram_rate'] / 1e12:.2f} TB/s, "
          f"L2 {r.get('l2_j', float('nan')) * 1e12:.1f} pJ/B at {r.get('l2_rate', float('nan')) / 1e12:.2f} TB/s, "
          f"bf16 matmul {r['gemm_j'] * 1e12:.3f} pJ/FLOP at {r['gemm_rate'] / 1e12:.0f} TFLOP/s, "
          f"fp32 FMA {r.get('fma_j', float('nan')) * 1e12:.1f} pJ/warp-instruction")
    res = {"windows": m, "rates": r}
    if None not in (args.step_ms, args.step_joules, args.step_dram_gb, args.step_tflop):
        s = split(r, args.step_ms, args.step_joules, args.step_dram_gb, args.step_tflop, args.step_l2_gb, args.step_inst)
        res["step"] = s
        parts = ", ".join(f"{k} {v:.3f} J ({v / s['step_joules']:.0%})" for k, v in s.items()
                          if k not in ("step_joules", "floor_ms", "floor_joules"))
        print(f"step {args.step_ms:.3f} ms, {s['step_joules']:.3f} J: {parts}")
        print(f"floor (the step's DRAM bytes and FLOPs at full rate, baseline over that time): "
              f"{s['floor_ms']:.3f} ms, {s['floor_joules']:.3f} J = {s['floor_joules'] / s['step_joules']:.0%} of the step's")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
