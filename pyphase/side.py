"""Backward-pass work that nothing later in the backward pass reads, on a side CUDA stream.

A weight's gradient (`h^T @ dy`) is read only by the optimizer after the whole backward pass, while
the input's gradient (`dy @ w^T`) is what the next backward op waits for. `off_critical_path()`
runs its body on a side stream forked from the current one (one side stream per stream, so packs
side by side keep their own), and queues an autograd callback that joins it back into the forking
stream when the backward pass ends (`torch.autograd.Variable._execution_engine.queue_callback`,
as DistributedDataParallel joins its all-reduce streams). Inside a CUDA graph capture the fork
and join become the graph's edges, so the side products may run beside the next layer's kernels.

The values are the same bit for bit: the same cuBLAS products with the same operands, only on
another stream. Tensors the side stream reads are kept referenced until the join, so the caching
allocator cannot hand their memory to the main stream while the side stream still reads it; the
body's outputs should be allocated before it (on the forking stream).

Off on the CPU, under torch.compile, or with PYPHASE_SIDE_STREAM=0 (then the body runs in place).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_lock = threading.Lock()
# forking stream's (device, handle) -> its side stream
_streams: dict[tuple[int, int], torch.cuda.Stream] = {}
# forking stream's (device, handle) -> (forking stream, side stream, tensors kept until the join)
_pending: dict[tuple[int, int], tuple[torch.cuda.Stream, torch.cuda.Stream, list[Tensor]]] = {}


def enabled(x: Tensor) -> bool:
    """Whether work on x goes to a side stream: CUDA, not under torch.compile, PYPHASE_SIDE_STREAM not 0."""
    return (x.is_cuda and not torch.compiler.is_compiling()
            and os.environ.get("PYPHASE_SIDE_STREAM", "1").strip() != "0")


@contextmanager
def off_critical_path(*keep: Tensor) -> Iterator[None]:
    """Run the body on the current stream's side stream (where `enabled` for keep[0]), joined back
    at the end of the running backward pass; `keep`: the tensors the body reads. Outside a backward
    pass, or where not enabled, the body runs on the current stream."""
    if not keep or not enabled(keep[0]) or not torch._C._current_graph_task_id() >= 0:
        yield
        return
    cur = torch.cuda.current_stream(keep[0].device)
    key = (cur.device_index, cur.cuda_stream)
    with _lock:
        side = _streams.get(key)
        if side is None:
            side = _streams[key] = torch.cuda.Stream(device=keep[0].device)
        first = key not in _pending
        if first:
            _pending[key] = (cur, side, [])
        _pending[key][2].extend(keep)
    if first:
        torch.autograd.Variable._execution_engine.queue_callback(lambda: _join(key))
    side.wait_stream(cur)
    with torch.cuda.stream(side):
        yield


def _join(key: tuple[int, int]) -> None:
    """The forking stream waits for its side stream; the kept tensors are released after that."""
    with _lock:
        cur, side, _kept = _pending.pop(key)
    cur.wait_stream(side)
