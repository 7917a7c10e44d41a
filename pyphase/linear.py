"""The attention's QKV projection with its bias, h @ w + b for K packed models, as one Triton GEMM (CUDA).

Why: `pyphase.attention`'s kernels used to add the q, k, v bias to every tile they load (the
projection came from cuBLAS without it). A tile that goes through registers for that add cannot go
straight from memory to the tensor cores' operand buffers, and the loops load k, v (forward and dq
pass) or q (dk/dv pass) again for every block. Measured on the H100 (K = 5, T = 256, head dim 32,
results/bench/attn_bias_in_qkv_*.txt): the three attention kernels without the adds in their loops
took 0.82 instead of 0.92 ms a layer at B = 256 (0.43 instead of 0.48 at B = 128). The bias is added
here instead, once per element, in the GEMM's epilogue (a persistent kernel, `CONFIG`: 0.134 ms
against cuBLAS's 0.124 ms without the bias at B = 256). The K = 5 training step
(`benches/profile_step.py --variants eager,eager+PYPHASE_LINEAR=torch,...`): 13.91 / 13.89 against
14.37 ms at B = 256 (-3.3%, results/bench/linear_persistent_h100_58a1928.txt); with a first,
per-tile kernel (0.162 ms) it was 14.09 / 14.05 against 14.36 / 14.33 ms, and 7.58 / 7.61 against
7.77 / 7.74 ms at B = 128 (results/bench/linear_bias_h100_957c54b.txt); the same losses.

Numerics are the unfused path's, bit for bit: the product accumulated in fp32 and rounded to the
input dtype (cuBLAS's result: on the H100 every element equal, results/bench/qkv_gemm_*.txt),
then the bias added in fp32 and rounded again, which is what the attention kernels computed as they
loaded the tiles (`causal_attention(..., bias_in_qkv=True)` then skips the add). The gradients are
those of `torch.bmm`'s autograd (the same cuBLAS products); the bias is taken as a constant here and
gets its gradient from the attention op, which sums it from its kernels' partial sums as before.
`linear_bias_reference` is the stock computation; on the CPU the kernel runs in Triton's
interpreter in the tests. PYPHASE_LINEAR=torch turns the kernel off (bmm, and the attention kernels
add the bias as before).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from pyphase import kernels
from pyphase.kernels import alive_mask, autocast_operands, call, launch, pad_width, register_autograd, sum_parts

try:
    import triton
    import triton.language as tl

    from pyphase.kernels import below
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

# (rows per tile, output columns per tile, warps, pipeline stages, programs per multiprocessor) of the
# persistent kernel, from .dev/gemm_sweep.py on the H100 at K = 5, N = 65,536 / 32,768, d = 128,
# 3d = 384 (results/bench/gemm_sweep_h100_*.txt): 0.134 / 0.070 ms against 0.124 / 0.065 ms for
# cuBLAS's bmm without the bias; 0.146-0.222 ms for six other persistent launches, 0.142-0.203 ms for
# one program per row tile looping over the columns, 0.162-0.175 ms for one program per tile.
CONFIG: dict[str, tuple[int, int, int, int, int]] = {"fwd": (128, 128, 8, 3, 2), "fwd_tma": (128, 128, 8, 3, 1),
                                                     "wgrad": (64, 128, 8, 3, 264)}
# "fwd_tma": the persistent kernel's launch with TMA descriptors (`tma`): its three stages of h and w
# tiles and the output's staging take 224 KB of shared memory, one program a multiprocessor.
# "wgrad": (rows per loop step, output columns per program, warps, pipeline stages, programs aimed at
# in a pack of kernels.PARTIALS_PACK models) of `weight_grad`'s kernel. The first launch tried (session
# 45, not swept), on an H200 against cuBLAS (`benches/profile_step.py --variants
# eager,eager+PYPHASE_WGRAD=cublas`, results/bench/profile_k{1,5}_b256_wgrad_h200_64f9045.txt): the
# K = 1, B = 256 step 2.691 against 3.176 ms (-15%, the lone model's batch-of-two gone), K = 5
# 10.958 / 10.954 against 10.997 / 11.007 ms.


def supported(h: Tensor, w: Tensor) -> bool:
    """Whether to use the kernel (else `linear_bias_reference`): CUDA tensors computed in a 16-bit
    dtype (under autocast, or given so), the inner width at most 256 (one tile), unless
    PYPHASE_LINEAR=torch. fp32 takes the stock path: its tiles would not fit the shared memory at
    this launch, and Triton's fp32 products would round through TF32 where cuBLAS's do not."""
    if triton is None or os.environ.get("PYPHASE_LINEAR", "").lower() == "torch" or not h.is_cuda:
        return False
    dt = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else h.dtype
    return w.shape[-2] <= 256 and dt in (torch.bfloat16, torch.float16)


def linear_bias_reference(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The stock computation, per model: h (K, N, in) @ w (K, in, out) + b (K, out).

    Not `torch.baddbmm`: cuBLAS needs baddbmm's broadcast bias written into the whole (K, N, out)
    output before the GEMM, a separate full-size copy kernel outside the compiler's reach (measured
    on the H100 for K = 5, B = 256: 16 such copies a step, 2.9 ms of a 24.8 ms step). A plain bmm
    plus a bias add lets torch.compile fuse the add into the next elementwise kernel (GELU, the
    residual add, the attention layout copy). The bias is cast to the product's dtype so the add
    stays in bf16 under autocast, like baddbmm's output."""
    y = torch.bmm(h, w)
    return y + b[:, None].to(y.dtype)


if triton is not None:

    @triton.jit
    def _linear_bias_kernel(H, W, B, Y, N, KK, NPROG, D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr,
                            BM: tl.constexpr, BN: tl.constexpr, STAGES: tl.constexpr, EVEN: tl.constexpr,
                            TMA: tl.constexpr = False):
        # Persistent: NPROG programs take the (model, row tile, column tile) tiles in turn, so the
        # loads of a program's next tile overlap the current one's product and stores. EVEN: the
        # tiles cover the rows and columns exactly, so the masks are constants that fold away. TMA:
        # h, w and y move by the tensor memory accelerator (descriptors over (model, row, column),
        # whose bounds replace the masks; `tma`), the same tiles and products.
        pid = tl.program_id(0)
        tm = tl.cdiv(N, BM)
        tn: tl.constexpr = (F + BN - 1) // BN
        inner = tl.arange(0, BD)
        i_ok = below(inner, D, EVEN)
        dt = Y.dtype.element_ty
        if TMA:
            h_desc = tl.make_tensor_descriptor(H, shape=[KK, N, D], strides=[N * D, D, 1], block_shape=[1, BM, BD])
            w_desc = tl.make_tensor_descriptor(W, shape=[KK, D, F], strides=[D * F, F, 1], block_shape=[1, BD, BN])
            y_desc = tl.make_tensor_descriptor(Y, shape=[KK, N, F], strides=[N * F, F, 1], block_shape=[1, BM, BN])
        for tile in tl.range(pid, tm * tn * KK, NPROG, num_stages=STAGES):
            model = tile // (tn * tm)
            k = model.to(tl.int64)
            row0 = (tile // tn) % tm * BM
            col0 = tile % tn * BN
            cols = col0 + tl.arange(0, BN)
            c_ok = below(cols, F, EVEN)
            if TMA:
                h = h_desc.load([model, row0, 0]).reshape(BM, BD)
                w = w_desc.load([model, 0, col0]).reshape(BD, BN)
            else:
                rows = row0 + tl.arange(0, BM)
                r_ok = below(rows, N, EVEN)
                h = tl.load(H + (k * N + rows)[:, None] * D + inner[None, :], mask=r_ok[:, None] & i_ok[None, :],
                            other=0.0)
                w = tl.load(W + k * D * F + inner[:, None] * F + cols[None, :], mask=i_ok[:, None] & c_ok[None, :],
                            other=0.0)
            # the product rounded as cuBLAS's output, then the bias added and rounded again
            y = (tl.dot(h, w).to(dt).to(tl.float32)
                 + tl.load(B + k * F + cols, mask=c_ok, other=0.0).to(tl.float32)[None, :])
            if TMA:
                y_desc.store([model, row0, col0], y.to(dt).reshape(1, BM, BN))
            else:
                tl.store(Y + (k * N + rows)[:, None] * F + cols[None, :], y.to(dt), mask=r_ok[:, None] & c_ok[None, :])

    @triton.jit
    def _wgrad_kernel(ALIVE, H, DY, PART, N, I, O, SPAN, SPANS, BI: tl.constexpr, BN: tl.constexpr,
                      BO: tl.constexpr, STAGES: tl.constexpr):
        # One program per (span of rows, column tile of the output, model): the span's share of
        # h^T @ dy, (I, BO) in fp32, written as one partial sum; `sum_parts` adds the spans up.
        s = tl.program_id(0)
        j = tl.program_id(1)
        k = tl.program_id(2).to(tl.int64)
        if tl.load(ALIVE + k) == 0:  # a frozen model (kernels.skipping_dead)
            return
        inner = tl.arange(0, BI)
        cols = j * BO + tl.arange(0, BO)
        i_ok = inner < I
        c_ok = cols < O
        acc = tl.zeros((BI, BO), tl.float32)
        first = s * SPAN
        for r in tl.range(0, SPAN, BN, num_stages=STAGES):
            rows = first + r + tl.arange(0, BN)
            r_ok = rows < N
            h = tl.load(H + (k * N + rows)[:, None] * I + inner[None, :], mask=r_ok[:, None] & i_ok[None, :], other=0.0)
            dy = tl.load(DY + (k * N + rows)[:, None] * O + cols[None, :], mask=r_ok[:, None] & c_ok[None, :], other=0.0)
            acc = tl.dot(tl.trans(h), dy, acc)
        tl.store(PART + ((k * SPANS + s) * I + inner)[:, None] * O + cols[None, :], acc,
                 mask=i_ok[:, None] & c_ok[None, :])


def _check(h: Tensor, w: Tensor, b: Tensor) -> tuple[int, int, int, int]:
    kk, n, d = h.shape
    f = w.shape[-1]
    if w.shape != (kk, d, f) or b.shape != (kk, f):
        raise ValueError(f"linear_bias shapes do not match: h {tuple(h.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)}")
    return kk, n, d, f


@torch.library.custom_op("pyphase::linear_bias_fwd", mutates_args=())
def _linear_bias_fwd(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """(K, N, d) @ (K, d, f) + (K, f) → (K, N, f) in h's dtype."""
    h, w, b = h.contiguous(), w.contiguous(), b.contiguous()
    kk, n, d, f = _check(h, w, b)
    y = h.new_empty(kk, n, f)
    use_tma = tma(h, d, f)
    bm, bn, warps, stages, per_sm = CONFIG["fwd_tma" if use_tma else "fwd"]
    bn = min(bn, pad_width(f))
    tiles = triton.cdiv(n, bm) * triton.cdiv(f, bn) * kk
    nprog = max(1, min(tiles, per_sm * _sm_count(h.device)))
    even = kernels.unmasked(n % bm == 0 and f % bn == 0 and d == pad_width(d))
    launch(_linear_bias_kernel, (nprog,))(h, w, b, y, n, kk, nprog, d, f, pad_width(d), bm, bn, stages, even,
                                          use_tma, num_warps=warps)
    return y


def tma(h: Tensor, d: int, f: int) -> bool:
    """Whether the QKV GEMM moves its tiles by TMA descriptors: by default on a GPU of compute
    capability 9 or more, rows 16-byte aligned (d, f multiples of 8 for 16-bit dtypes), with a Triton
    that makes descriptors inside kernels; PYPHASE_LINEAR_TMA=0 turns it off, =1 also takes it in
    Triton's interpreter (tests). Descriptors made inside a kernel need a scratch allocator, set here once.

    The same bits (tests; the K = 5, B = 256 step's losses; a whole cold phase3a, results/bench).
    Measured on an H200 (session 46, results/bench/profile_k5_b256_linear_tma_*): the kernel took
    112 against 133 us a layer at its own launch ("fwd_tma"), and the K = 5, B = 256 step 11.352 /
    11.378 / 11.360 against 11.382 / 11.394 / 11.450 ms, alternating in one process (-0.4%, at the
    power cap). The default since session 47."""
    global _ALLOCATOR_SET
    env = os.environ.get("PYPHASE_LINEAR_TMA", "")
    if (env == "0" or (not h.is_cuda and env != "1") or d % 8 or f % 8
            or not hasattr(tl, "make_tensor_descriptor") or not hasattr(triton, "set_allocator")):
        return False
    if h.is_cuda:
        if torch.cuda.get_device_capability(h.device)[0] < 9:
            return False
        if not _ALLOCATOR_SET:
            triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
            _ALLOCATOR_SET = True
    return True


_ALLOCATOR_SET = False


def _sm_count(device: torch.device) -> int:
    """Multiprocessors of a CUDA device (the interpreter on the CPU: 4)."""
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


@_linear_bias_fwd.register_fake
def _(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    kk, n, _, f = _check(h, w, b)
    return h.new_empty(kk, n, f)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    h, w, b = inputs
    ctx.save_for_backward(h, w)
    ctx.b_grad = b.requires_grad


def _backward(ctx, dy: Tensor | None):  # type: ignore[no-untyped-def]
    h, w = ctx.saved_tensors
    if dy is None:
        return None, None, None
    # torch.bmm's autograd formulas (the same cuBLAS products as the unfused path)
    dh = dy.bmm(w.transpose(1, 2))
    dw = weight_grad(h, dy)
    db = dy.sum(dim=1, dtype=torch.float32).to(dy.dtype) if ctx.b_grad else None
    return dh, dw, db


register_autograd(_linear_bias_fwd, _backward, _setup)


def wgrad_supported(h: Tensor, dy: Tensor) -> bool:
    """Whether `weight_grad` runs its Triton kernel: CUDA tensors in a 16-bit dtype, the inner width at
    most 128 (padded: one tile), not while torch.compile traces, unless PYPHASE_WGRAD=cublas."""
    return (triton is not None and h.is_cuda and not torch.compiler.is_compiling()
            and os.environ.get("PYPHASE_WGRAD", "").lower() != "cublas"
            and h.dtype in (torch.bfloat16, torch.float16) and dy.dtype == h.dtype and pad_width(h.shape[-1]) <= 128)


def weight_grad(h: Tensor, dy: Tensor, use_triton: bool | None = None) -> Tensor:
    """h (K, N, i) transposed @ dy (K, N, o) → (K, i, o) in h's dtype: a weight's gradient, a sum over
    the N rows, accumulated in fp32 and rounded once (as cuBLAS's product is).

    Where `wgrad_supported` (or `use_triton` forces it), one Triton kernel: each program sums one span
    of rows for one column tile of one model, and `kernels.sum_parts` adds the spans up in a fixed
    order. The spans are chosen for a pack of kernels.PARTIALS_PACK models and the row count, never
    from K or the device, so a model gets the same bits alone and in any pack (cuBLAS sums a lone
    model's product, K = 1, in another order than a batch's: results/bench/cublas_batch_bits_h200_*.txt;
    it was run as a batch of two for that, at ~3x the product's time, 95 against 26-30 us at
    N = 65,536, a K = 1, B = 256 step 3.28 instead of 2.79 ms, results/bench/profile_k1_b256_*_h200_76d7fbb.txt).
    PYPHASE_WGRAD=cublas gives sessions 43-44's cuBLAS products (other bits); so does the CPU."""
    if not (use_triton if use_triton is not None else wgrad_supported(h, dy)):
        kk = h.shape[0]
        if kk == 1 and h.is_cuda:
            h, dy = h.expand(2, -1, -1), dy.expand(2, -1, -1)
        return h.transpose(1, 2).bmm(dy)[:kk]
    h, dy = h.contiguous(), dy.contiguous()
    kk, n, i = h.shape
    o = dy.shape[-1]
    if dy.shape[:2] != (kk, n):
        raise ValueError(f"weight_grad shapes do not match: h {tuple(h.shape)}, dy {tuple(dy.shape)}")
    bn, bo, warps, stages, target = CONFIG["wgrad"]
    bo = min(bo, pad_width(o))
    tiles = triton.cdiv(o, bo)
    steps = triton.cdiv(n, bn)
    # rows per span (the summation order): for PARTIALS_PACK models, not kk
    spans = max(1, min(steps, triton.cdiv(target, tiles * kernels.PARTIALS_PACK)))
    span = triton.cdiv(steps, spans) * bn
    spans = triton.cdiv(n, span)
    part = torch.empty(kk, spans, i * o, device=h.device, dtype=torch.float32)
    launch(_wgrad_kernel, (spans, tiles, kk))(alive_mask(kk, h.device), h, dy, part, n, i, o, span, spans,
                                              pad_width(i), bn, bo, stages, num_warps=warps)
    return sum_parts(part).view(kk, i, o).to(h.dtype)


class _Project(torch.autograd.Function):
    """y @ w per model, torch.bmm's forward and input gradient, `weight_grad` for w's gradient."""

    @staticmethod
    def forward(ctx, y: Tensor, w: Tensor) -> Tensor:  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(y, w)
        return torch.bmm(y, w)

    @staticmethod
    def backward(ctx, dz: Tensor):  # type: ignore[no-untyped-def, override]
        y, w = ctx.saved_tensors
        return (dz.bmm(w.transpose(1, 2)) if ctx.needs_input_grad[0] else None,
                weight_grad(y, dz) if ctx.needs_input_grad[1] else None)


def project(y: Tensor, w: Tensor) -> Tensor:
    """torch.bmm(y, w) (K, N, i) @ (K, i, o), the same bits, with a lone model's weight gradient as a
    batch's (`weight_grad`); under autocast both operands cast as torch.bmm's autocast casts them."""
    if not y.is_cuda or torch.compiler.is_compiling():
        return torch.bmm(y, w)
    y, w = autocast_operands("cuda", y, w)
    with torch.autocast("cuda", enabled=False):
        return _Project.apply(y, w)


def linear_bias(h: Tensor, w: Tensor, b: Tensor, use_triton: bool | None = None) -> Tensor:
    """h (K, N, d) @ w (K, d, f) + b (K, f), per model, with the stock path's roundings (under
    autocast w and b are cast to the autocast dtype, as torch.bmm's autocast casts w). One kernel
    where `supported` (or when `use_triton` forces it), else `linear_bias_reference`."""
    if not (use_triton if use_triton is not None else supported(h, w)):
        return linear_bias_reference(h, w, b)
    h, w = autocast_operands(h.device.type, h, w)
    return call(_linear_bias_fwd, h, w, b.to(w.dtype))
