"""kernels.sum_parts (fixed-order sum of per-program partial sums) against torch's `part.sum(dim=1)`,
for the partial-sum shapes of a K = 5, B = 256 training step, and for other column blocks.

    python benches/bench_sum_parts.py [--blocks 64,16/256,16/...]
"""
import argparse

import torch

from kernel_bench import capture
from pyphase.kernels import sum_parts

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--blocks", default="", help='"rows,cols/rows,cols/...": column blocks to time besides the default')
a = ap.parse_args()
# (who, K, R, C): LayerNorm backward (9 a step), the MLP "dw" backward (4), the fused embedding
# backward (token table, position table, LayerNorm), the head's weight gradient
SHAPES = [("layernorm", 5, 256, 384), ("mlp dw", 5, 16, 131_584), ("embed wte", 5, 64, 16_384),
          ("embed wpe", 5, 4, 32_768), ("embed ln", 5, 64, 256), ("head", 5, 128, 16_384)]


def timed(fn, n=20, reps=20):
    """GPU microseconds a call: n calls captured in one CUDA graph, replayed `reps` times (a
    Python loop of launches would time Triton's host-side launch, ~20 us, instead of the kernel)."""
    fn()
    g = capture(fn, n)
    g.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / (n * reps) * 1e3


blocks = [None] + [tuple(int(v) for v in b.split(",")) for b in a.blocks.split("/") if b]
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; microseconds a call")
for who, k, r, c in SHAPES:
    part = torch.randn(k, r, c, device="cuda")
    ref = part.double().sum(dim=1)
    base = timed(lambda: part.sum(dim=1))
    line = f"{who:10s} ({k}, {r}, {c}): torch {base:6.1f}"
    for blk in blocks:
        got = sum_parts(part, blk)
        err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
        us = timed(lambda: sum_parts(part, blk))
        line += f" | {blk or 'default'} {us:6.1f} (x{base / us:.2f}, err {err:.1e})"
    print(line, flush=True)
