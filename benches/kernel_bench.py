"""Shared parts of the kernel benches (bench_attention, bench_ln, bench_head, bench_mlp): CUDA-event
timing (also of captured steps: bench_skip_dead, bench_switch), calls captured in a CUDA graph
(bench_sum_parts, energy_floor, bench_train's gather), the common command line, the table of forward + backward /
forward timings with ratios to the first row, and the JSON output. Not a bench itself."""
from __future__ import annotations

import argparse
import json
from typing import Callable

import torch


def timed(fn: Callable[[], object], iters: int) -> float:
    """Median ms of `fn` over `iters` calls (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def capture(fn: Callable[[], object], repeats: int) -> torch.cuda.CUDAGraph:
    """`repeats` calls of fn captured in one CUDA graph (fn run once first on a side stream, as
    capture needs), so short kernels replay without the host's launch gaps between them."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    return graph


def replay_ms(graph: torch.cuda.CUDAGraph, n: int) -> float:
    """Mean ms of one replay of a captured CUDA graph over n replays back to back (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


def parser(doc: str, iters: int = 30, configs: bool = True) -> argparse.ArgumentParser:
    """--k --b --t --d (packed problem size), --iters, --configs (';'-separated launch
    configurations, unless configs=False) and --json; a bench adds its own arguments."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--b", type=int, default=256)
    ap.add_argument("--t", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--iters", type=int, default=iters)
    if configs:
        ap.add_argument("--configs", default="")
    ap.add_argument("--json", default=None)
    return ap


class Table:
    """Rows of {variant, fwd+bwd_ms, fwd_ms}, printed as measured with ratios to the first row."""

    def __init__(self, iters: int, width: int = 28) -> None:
        self.iters, self.width, self.rows = iters, width, []

    def measure(self, name: str, both: Callable[[], object], fwd: Callable[[], object], **extra) -> dict:  # type: ignore[no-untyped-def]
        """Time `both` (forward + backward) and `fwd` (forward, under no_grad); add and print the row."""
        r = {"variant": name, "fwd+bwd_ms": timed(both, self.iters)}
        with torch.no_grad():
            r["fwd_ms"] = timed(fwd, self.iters)
        r.update(extra)
        self.rows.append(r)
        r0 = self.rows[0]
        print(f"  {r['variant']:<{self.width}} fwd+bwd {r['fwd+bwd_ms']:7.3f} ms (x{r0['fwd+bwd_ms'] / r['fwd+bwd_ms']:.2f})"
              f"   fwd {r['fwd_ms']:7.3f} ms (x{r0['fwd_ms'] / r['fwd_ms']:.2f})"
              f"   bwd {r['fwd+bwd_ms'] - r['fwd_ms']:7.3f} ms", flush=True)
        return r

    def write_json(self, path: str | None, shape: dict) -> None:
        if path:
            with open(path, "w") as fh:
                json.dump({"shape": shape, "rows": self.rows, "device": torch.cuda.get_device_name(),
                           "torch": torch.__version__}, fh, indent=1)


def config_list(spec: str, default: str) -> list[str]:
    """The ';'-separated configurations of --configs, or [default]."""
    return [c.strip() for c in spec.split(";") if c.strip()] or [default]


def failed(c: str, e: Exception) -> None:
    print(f"  triton {c}: failed: {str(e).splitlines()[0][:160]}", flush=True)
