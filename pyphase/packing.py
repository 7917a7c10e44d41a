"""A pack's weights in the autocast dtype, one copy a step, and its gradients back into one buffer.

`PackedNanoTransformer` keeps each model's parameters as one fp32 row of `flat` (K, P); each
parameter is a strided (K, *shape) view into it. Under bf16 autocast every path of the training
step rounds the attention and MLP weights (`AUTOCAST_PARAMS`) to bf16 before it uses them. Done
where they are used, that is a cast kernel per weight (each also making the strided view
contiguous), and in the backward pass another per weight taking its bf16 gradient back to fp32,
then one concatenation of all gradients into the (K, P) buffer the optimizer reads: ~50 small
kernels a step, whatever the batch size.

`WorkingCopy` does the same in two kernels and two concatenations: `refresh` rounds those weights
of `flat` to the autocast dtype once a step, into one buffer where each weight is a contiguous
(K, *shape) block (these blocks are the leaves the step differentiates, so no op casts and no
gradient is cast back), and `gather` writes the step's gradients, concatenated per dtype, into the
(K, P) fp32 buffer in `flat`'s order. Rounding to bf16 is round-to-nearest-even either way and
bf16 to fp32 is exact, so every op sees the same values and the optimizer the same gradient: the
same bits as the casts (tests/test_packing.py, and phase3a on the H100, results/bench/README.md).

Measured on the H100 (benches/bench_working_copy.py, results/bench/bench_working_copy_*_8d6214b.txt):
one config at B = 128 steps x1.065 faster, packs at B = 32 x1.05-1.09; next to another pack's
big kernels the small ones were mostly hidden already, so phase3a's two packs side by side gain
only x1.002.

The trainer uses it under autocast without torch.compile; PYPHASE_WORKING_COPY=0 turns it off.
On the CPU the two kernels are torch copies.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pyphase.kernels import launch

if TYPE_CHECKING:
    from pyphase.model import PackedNanoTransformer

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

# The block parameters (names "h{i}.NAME") that every autocast path of the step rounds to the
# autocast dtype before any use: the QKV projection and its bias, the output projection, the MLP's
# two weights and first bias. The others are read in fp32 (LayerNorms, the biases added to the
# stream, the embeddings and the head, whose kernels round the weight themselves).
AUTOCAST_PARAMS = ("attn_w", "attn_b", "proj_w", "fc_w", "fc_b", "fc2_w")
BLOCK = 4096  # elements of one parameter of one model per program
ALIGN = 64  # each block of the working copy starts at a multiple of this many elements


def enabled() -> bool:
    """PYPHASE_WORKING_COPY: unset or anything but 0/off/no."""
    return os.environ.get("PYPHASE_WORKING_COPY", "1").lower() not in ("0", "off", "no")


def copied(name: str) -> bool:
    """Whether parameter `name` ("h0.attn_w", "lnf_w", ...) is in the working copy."""
    block, _, param = name.partition(".")
    return block.startswith("h") and param in AUTOCAST_PARAMS


if triton is not None:

    @triton.jit
    def _bf16_bits(x):
        """fp32 x rounded to bf16 (nearest, ties to even; NaN to the GPU's canonical 0x7FFF), as
        bf16's bit pattern in uint16: the GPU's conversion (what torch's casts give on CUDA),
        spelled out in integers so that Triton's interpreter, which truncates, gives it too."""
        b = x.to(tl.uint32, bitcast=True)
        r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
        return tl.where(x != x, 0x7FFF, r).to(tl.uint16)

    @triton.jit
    def _segment_block(N, BLOCK: tl.constexpr):
        """Program (s, c, k)'s share: segment s (of size N[s]), model k, elements j = [c·BLOCK,
        (c+1)·BLOCK) of the segment, in bounds where ok."""
        s = tl.program_id(0)
        k = tl.program_id(2).to(tl.int64)
        n = tl.load(N + s)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        return s, k, n, j, j < n

    @triton.jit
    def _refresh_kernel(FLAT, LOW, SRC, N, DST, P, BLOCK: tl.constexpr, BF16: tl.constexpr):
        # elements of copied parameter s of model k (`_segment_block`)
        s, k, n, j, ok = _segment_block(N, BLOCK)
        x = tl.load(FLAT + k * P + tl.load(SRC + s) + j, mask=ok)
        at = tl.load(DST + s) + k * n + j
        if BF16:
            tl.store(LOW.to(tl.pointer_type(tl.uint16)) + at, _bf16_bits(x), mask=ok)
        else:
            tl.store(LOW + at, x.to(LOW.dtype.element_ty), mask=ok)

    @triton.jit
    def _gather_kernel(G_LOW, G32, OUT, DST, N, OFF, LOW, P, P_LOW, P32, BLOCK: tl.constexpr):
        # elements of parameter s's gradient of model k (`_segment_block`), from its dtype's
        # concatenation (row k, offset OFF[s]) to OUT's row k at DST[s]
        s, k, n, j, ok = _segment_block(N, BLOCK)
        off = tl.load(OFF + s)
        if tl.load(LOW + s) != 0:
            g = tl.load(G_LOW + k * P_LOW + off + j, mask=ok).to(tl.float32)
        else:
            g = tl.load(G32 + k * P32 + off + j, mask=ok)
        tl.store(OUT + k * P + tl.load(DST + s) + j, g, mask=ok)


class WorkingCopy:
    """The working copy of a packed model's `AUTOCAST_PARAMS` in `dtype` (see the module's
    docstring). `leaves` / `leaf`: the parameters a step differentiates, in the model's order (the
    copy's blocks for copied parameters, the model's own fp32 leaves for the others)."""

    def __init__(self, model: "PackedNanoTransformer", dtype: torch.dtype) -> None:
        self.model = model
        kk, p = model.flat.shape
        dev = model.flat.device
        self.kk, self.p = kk, p
        src, sizes, dst = [], [], []
        base = 0
        for name in model.names:
            if copied(name):
                a, b, _ = model._slices[name]
                src.append(a)
                sizes.append(b - a)
                dst.append(base)
                base += -(-kk * (b - a) // ALIGN) * ALIGN
        self.low = torch.zeros(max(base, 1), dtype=dtype, device=dev)
        self.leaves: list[Tensor] = []
        blocks = iter(zip(dst, sizes))
        for name, leaf in zip(model.names, model.leaves):
            if copied(name):
                d, n = next(blocks)
                shape = model._slices[name][2]
                self.leaves.append(self.low[d : d + kk * n].view(kk, *shape).detach().requires_grad_())
            else:
                self.leaves.append(leaf)
        self.leaf = dict(zip(model.names, self.leaves))
        # gather: each parameter's place in flat's rows, its size, and its offset within the
        # row of its dtype's concatenation
        g_dst, g_n, g_off, g_low = [], [], [], []
        width = {True: 0, False: 0}
        for name in model.names:
            a, b, _ = model._slices[name]
            low = copied(name)
            g_dst.append(a)
            g_n.append(b - a)
            g_off.append(width[low])
            g_low.append(int(low))
            width[low] += b - a
        self.p_low, self.p32 = width[True], width[False]
        as_t = lambda v: torch.tensor(v, dtype=torch.int64, device=dev)  # noqa: E731
        self._src, self._sizes, self._dst = as_t(src), as_t(sizes), as_t(dst)
        self._g_dst, self._g_n, self._g_off, self._g_low = as_t(g_dst), as_t(g_n), as_t(g_off), as_t(g_low)
        self._max_n = max(sizes, default=0)
        self._max_g = max(g_n)
        self._copied_ix = [i for i, name in enumerate(model.names) if copied(name)]
        self._copied_set = set(self._copied_ix)

    def _use_kernels(self) -> bool:
        return triton is not None and self.low.is_cuda

    @torch.no_grad()
    def refresh(self) -> None:
        """Round the copied parameters of the model's `flat` into the working copy (in place)."""
        flat = self.model.flat
        if not self._src.numel():
            return
        if self._use_kernels():
            grid = (self._src.numel(), triton.cdiv(self._max_n, BLOCK), self.kk)
            launch(_refresh_kernel, grid)(flat, self.low, self._src, self._sizes, self._dst, self.p, BLOCK=BLOCK,
                                          BF16=self.low.dtype == torch.bfloat16, num_warps=4)
            return
        for i in self._copied_ix:
            name = self.model.names[i]
            a, b, _ = self.model._slices[name]
            self.leaves[i].detach().view(self.kk, b - a).copy_(flat[:, a:b])

    def gather(self, grads: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """The step's gradients (in `leaves` order: the copy's dtype for copied parameters, fp32
        for the others) as one (K, P) fp32 buffer in `flat`'s order."""
        if not self._use_kernels():  # one concatenation, promoting the copy's dtype to fp32
            return self.model.flat_grad(list(grads))
        kk = self.kk
        low = [g.reshape(kk, -1) for i, g in enumerate(grads) if i in self._copied_set]
        rest = [g.reshape(kk, -1) for i, g in enumerate(grads) if i not in self._copied_set]
        g_low = torch.cat(low, dim=1) if low else self.low.new_empty(kk, 0)
        g32 = torch.cat(rest, dim=1) if rest else self.model.flat.new_empty(kk, 0)
        out = self.model.flat.new_empty(kk, self.p)
        grid = (self._g_n.numel(), triton.cdiv(self._max_g, BLOCK), kk)
        launch(_gather_kernel, grid)(g_low, g32, out, self._g_dst, self._g_n, self._g_off, self._g_low, self.p,
                                     self.p_low, self.p32, BLOCK=BLOCK, num_warps=4)
        return out
