"""Weight gradients on a side CUDA stream, off the backward pass's critical path.

A weight's gradient (`h^T @ dy`) is read only once the backward pass is over, while the input's
gradient (`dy @ w^T`) is what the next backward op waits for. So the ops of `pyphase.linear` may
compute the first on a side stream forked from the current one (one side stream per stream, so
packs side by side keep theirs apart), where the second's consumers need not wait for it.

Who reads the side stream's result must wait for it, and autograd's engine does not know about
the side stream (it orders a node's consumers by the stream the node's forward ran on). Hence the
weights go through `defer(*weights)` first, at the start of the forward pass: one autograd node
(`_Deferred`) made before every other node of the pass, so the engine, which runs the ready node
made last first, runs its backward last. It makes each forking stream wait for its side stream
(inside a CUDA graph capture these are the graph's edges) and only then hands the weights'
gradients on (to a cast, a view, the leaves). An op uses the side stream only for a weight that
`claim` gives it: a deferred weight, once (two gradients of one weight would be added up by the
engine before the join).

The values are the same bit for bit: the same cuBLAS products with the same operands, only on
another stream. The tensors the side stream reads stay referenced until the join, so the caching
allocator cannot hand their memory to the forking stream meanwhile; the products' outputs are
allocated on the forking stream. Off on the CPU, under torch.compile, or with
PYPHASE_SIDE_STREAM=0 (then `defer` returns the weights as they are, and nothing is claimed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

_lock = threading.Lock()
# forking stream's (device, handle) -> its side stream
_streams: dict[tuple[int, int], torch.cuda.Stream] = {}
# forking stream's (device, handle) -> (forking stream, side stream, tensors kept until the join)
_pending: dict[tuple[int, int], tuple[torch.cuda.Stream, torch.cuda.Stream, list[Tensor]]] = {}
_MARK = "_pyphase_side_claimable"


def enabled(x: Tensor) -> bool:
    """Whether weight gradients of x's ops may go to a side stream: CUDA, not under torch.compile,
    PYPHASE_SIDE_STREAM not 0."""
    return (x.is_cuda and not torch.compiler.is_compiling()
            and os.environ.get("PYPHASE_SIDE_STREAM", "1").strip() != "0")


class _Deferred(torch.autograd.Function):
    """Identity on the weights; its backward, run last, joins the side streams, then passes the
    gradients on unchanged."""

    @staticmethod
    def forward(ctx: Any, *ws: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.device = ws[0].device
        return tuple(w.view_as(w) for w in ws)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if ctx.device.type == "cuda":
            join(torch.cuda.current_stream(ctx.device))
        return grads


def defer(*ws: Tensor) -> tuple[Tensor, ...]:
    """The weights, through one `_Deferred` node where `enabled` and any needs a gradient (call it
    before any other op of the forward pass), each marked claimable once; else as they are."""
    if not ws or not enabled(ws[0]) or not torch.is_grad_enabled() or not any(w.requires_grad for w in ws):
        return ws
    out = _Deferred.apply(*ws)
    for o in out:
        setattr(o, _MARK, True)
    return out


def claim(w: Tensor) -> bool:
    """True (once) for a weight from `defer`: its op may compute its gradient on a side stream."""
    if getattr(w, _MARK, False) and enabled(w):
        setattr(w, _MARK, False)
        return True
    return False


@contextmanager
def off_critical_path(*keep: Tensor) -> Iterator[None]:
    """Run the body on the current stream's side stream, joined back by `_Deferred`'s backward;
    `keep`: the tensors the body reads (at least one, on the device)."""
    cur = torch.cuda.current_stream(keep[0].device)
    key = (cur.device_index, cur.cuda_stream)
    with _lock:
        side = _streams.get(key)
        if side is None:
            side = _streams[key] = torch.cuda.Stream(device=keep[0].device)
        _pending.setdefault(key, (cur, side, []))[2].extend(keep)
    side.wait_stream(cur)
    with torch.cuda.stream(side):
        yield


def join(cur: torch.cuda.Stream) -> None:
    """The stream waits for its side stream's work so far; the tensors kept for it are released."""
    with _lock:
        entry = _pending.pop((cur.device_index, cur.cuda_stream), None)
    if entry is not None:
        cur.wait_stream(entry[1])
