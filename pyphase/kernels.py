"""Launching pyphase's Triton kernels, compiling all of them at once before the first step, and
running their torch.library custom ops without torch.library's dispatch outside torch.compile.

Every Triton kernel of pyphase (attention, MLP, LayerNorm, head) is launched as
`launch(kernel, grid)(*args, **meta)`. Normally that is `kernel[grid](*args, **meta)`. Inside
`record()` nothing runs: the launch is only written down (kernel, grid, arguments), so that one dry
forward + backward pass of the model lists every kernel specialisation a training step needs.
`compile_all(records)` then compiles them side by side in a thread pool (Triton's compiler releases
the GIL; `triton.runtime._async_compile.AsyncCompileMode` hands each compile to the pool) into
Triton's in-process kernel cache, so the first real step finds them compiled.
`prepare_compiles()`, called when a CUDA trainer is made, readies Triton's driver in a thread
meanwhile.

Each op is a torch.library custom op (so torch.compile can trace around it) with its autograd
registered through `register_autograd`, which also builds the same autograd as a plain
torch.autograd.Function over the op's undecorated function. `call(op, *args)` uses the custom op
while torch.compile traces and the plain Function otherwise; `backward_op(ctx, op)` picks the
matching form of an op called inside a backward pass. Why: the first call of any custom op imports
torch._dynamo (torch.library wraps the op's implementation in `torch._disable_dynamo`), which
pulls in sympy and torch.distributed; measured on the H100 that import was ~4 s of the time to the
first step on a fresh machine (results/bench/setup_timing2_h100_58bdfb8.txt; 0.15 s for the whole
dry pass without it, setup_timing2_h100_e167fd1.txt).

`skipping_dead(alive)` makes the step's kernels skip the programs of the pack's diverged models
(each takes the mask from `alive_mask` as its first argument and returns at once for a dead model).

`pad_width(n)` is the padded on-chip width the kernels use; `unmasked(whole)` says whether a kernel
drops its bounds masks; `interpreted()` whether Triton interprets the kernels (no inline PTX). `sum_parts(part)` is the one kernel
kept here, shared by the ops whose programs each write a partial sum (the LayerNorm, MLP, embedding
and head parameter gradients): it adds them up in a fixed order, in place of `part.sum(dim=1)`,
which took 11-21 us a call for these shapes on the H100 (13 calls a step;
results/bench/ops_eager_k5_b256_*.txt).

Why compile in parallel: on a fresh machine the first step compiled the kernels (12 of them, 62
launches a step) one after another. Measured on the H100 (results/bench/p3short_*_bb47106.txt,
phase3a shortened to 300 steps, cold Triton cache): 15.6 s to the first step compiling on first
use, 9.9 s with `PackTrainer.precompile`. Whole phase3a on a fresh machine, to its first step:
13.8 s at 10d055a, 4.8 s at e167fd1. Recording uses a plain module flag, not a context variable,
because autograd runs the backward pass on its own thread; the compiles are submitted from the
caller's thread, where AsyncCompileMode is active.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

_lock = threading.Lock()

# Programs the LayerNorm and MLP backward launches aim at (all models together; ~10 per SM of an
# H100): each program sums its rows' parameter gradients, so fewer rows per program means more
# partial sums but more programs side by side. Measured at K = 5 (results/bench/b128_sweep_1ae46b6.txt):
# at B = 256 the tuned launches already ran ~1,280 programs; at B = 128 they ran half as many, and
# halving the rows per program took the step from 8.46 to 8.26 ms (MLP) and 8.38 ms (LayerNorm).
BACKWARD_PROGRAMS = 1280
# The pack size those launch choices are made for, whatever the pack's actual size K. A choice that
# sets how many rows one partial sum covers (MLP and LayerNorm backward spans, the embedding's
# sequence chunks, `sum_parts`'s blocks) sets the order of the sums, hence the bits; made from K, it
# gave a config other numbers in a pack of 3 than in a pack of 5, so a sweep spread over two GPUs
# (packs of 2 and 3) did not reproduce the one-GPU sweep (packs of 5): at phase3a's edge-of-stability
# learning rates the runs then differed by up to 0.5 nats, one diverging in one and not the other
# (results/bench/README.md, session 43). Made for this fixed size, a config's numbers do not depend on
# which configs share its pack. 5 is phase3a's and phase2_5's pack size, whose bits stay as they were.
PARTIALS_PACK = 5
_records: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]] | None = None
# The pack's alive mask while `skipping_dead` is active (`alive_mask`), and all-true masks otherwise.
_alive: Tensor | None = None
_all_alive: dict[tuple[int, str], Tensor] = {}


# Compile options every launch passes explicitly. FP fusion (`a * b + c` as one fused multiply-add
# where Triton's compiler sees fit) is what every kernel's numerics and bits were measured and tested
# with, and where one product must stay a product of its own the kernel says so (`mul_rn`); Triton
# has it on by default through 3.9, which warns that 3.10's default will be off.
LAUNCH_OPTIONS: dict[str, Any] = {"enable_fp_fusion": True}


def launch(kernel: Any, grid: Any) -> Callable[..., Any]:
    """`kernel[grid]` with LAUNCH_OPTIONS, or, while `record()` is active, a callable that records
    the launch (with them too, so that its compile is the one the launch will look up)."""
    if _records is None:
        run = kernel[grid]
        return lambda *args, **meta: run(*args, **{**LAUNCH_OPTIONS, **meta})

    def note(*args: Any, **meta: Any) -> None:
        with _lock:
            if _records is not None:
                _records.append((kernel, grid, args, {**LAUNCH_OPTIONS, **meta}))
    return note


@contextmanager
def skipping_dead(alive: Tensor) -> Iterator[None]:
    """Within: the kernels of a training step of K packed models (`alive`: (K,) bool on their
    device) skip the programs of every model k with alive[k] false. The kernels read the mask when
    they run, so a CUDA graph captured within skips whichever models are dead at each replay. A
    model that diverged is frozen (`train.PackTrainer`): its step computes nothing anyone reads, and
    skipping it leaves every other model's bits unchanged (each program works on one model's rows;
    what the skipped programs would write stays unwritten). The kernels that skip: attention's
    three, the MLP-half forward and the MLP "dw" backward, the add + LayerNorm backward, the
    embedding + LayerNorm forward and backward, and the head's two (the QKV GEMM, cuBLAS's products
    and the partial sums still run). PYPHASE_SKIP_DEAD=0 turns it off (for A/B timing)."""
    global _alive
    prev = _alive
    _alive = alive if os.environ.get("PYPHASE_SKIP_DEAD", "1") != "0" else None
    try:
        yield
    finally:
        _alive = prev


def alive_mask(kk: int, device: torch.device) -> Tensor:
    """The mask a kernel over kk models gets as its ALIVE argument: the one `skipping_dead` set (if
    it has kk entries on `device`), else an all-true one (made once per size and device, never
    inside a CUDA graph capture, where its memory would belong to the graph)."""
    a = _alive
    if a is not None and a.shape[0] == kk and a.device == device:
        return a
    key = (kk, str(device))
    ones = _all_alive.get(key)
    if ones is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"kernels.alive_mask: first all-true mask of {kk} models made inside a CUDA graph "
                               "capture; launch the kernels once before capturing")
        ones = _all_alive[key] = torch.ones(kk, dtype=torch.bool, device=device)
    return ones


@contextmanager
def record() -> Iterator[list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]]]:
    """Within: Triton launches are recorded instead of run (outputs stay uninitialised)."""
    global _records
    out: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]] = []
    with _lock:
        if _records is not None:
            raise RuntimeError("kernels.record() is already active")
        _records = out
    try:
        yield out
    finally:
        with _lock:
            _records = None


def compile_all(records: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]],
                workers: int | None = None) -> None:
    """Compile the recorded launches in parallel into Triton's kernel cache (nothing runs), and
    load each compiled kernel onto the GPU as soon as its own compile is done (`_Loader`).

    Where `forked_compile.wanted()`, the compiles run in forked processes (`forked_compile`: the
    thread pool alone overlapped them only partly, Triton's compiler being partly Python), each
    writing Triton's on-disk cache; the warm-up of each launch, in the order the processes finish,
    then finds its kernel there. Either way the warm-ups go through a thread pool under Triton's
    AsyncCompileMode, which also compiles whatever the processes did not. A Triton without an
    asynchronous compile mode compiles them one after another here, which is what their first
    launch would have done anyway."""
    if not records:
        return
    try:
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:  # older Triton: compile sequentially
        for kernel, grid, args, meta in records:
            kernel.warmup(*args, grid=grid, **meta)
        return
    n = workers or max(1, min(len(records), os.cpu_count() or 1, 16))
    forked, order, launchers = _fork_compiles(records, n)
    try:
        with ThreadPoolExecutor(n) as pool, ThreadPoolExecutor(n) as loaders:
            loader = _Loader(loaders, launchers.wait if launchers is not None else None)
            with AsyncCompileMode(pool):
                for kernel, grid, args, meta in (records[i] for i in order):
                    loader.add(kernel.warmup(*args, grid=grid, **meta))
            for f in loader.loads:
                f.result()
    finally:
        if forked is not None:
            forked.close()
        if launchers is not None:
            launchers.close()


# prepare_compiles' thread, and the event it sets once Triton's driver is ready (or failed)
_prepared: tuple[threading.Thread, threading.Event] | None = None


def prepare_compiles() -> None:
    """Start, once per process and in a background thread, what compiling needs before anything
    can be planned: Triton's CUDA driver, whose first use on a fresh machine builds its C helper
    module with gcc, then `forked_compile.warm_up`. Called when a trainer is made, before the dry
    pass, which it overlaps; `compile_all` waits for the driver before planning. In a cold phase3a
    on the H100, `compile_all` had spent 0.39 s before planning and 0.20 s planning; with this,
    0.00 s and 0.04-0.05 s (results/bench/timeline_cold_h100_cd054c7.txt, _db096a7, _22db3a0).
    Nothing on the CPU or without Triton."""
    global _prepared
    if _prepared is not None or not torch.cuda.is_available():
        return
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
        return
    ready = threading.Event()

    def run() -> None:
        try:
            from triton.runtime.driver import driver

            target = driver.active.get_current_target()
        except Exception:  # noqa: BLE001 - `_wait_for_driver` asks the driver again, raising its error
            return
        finally:
            ready.set()
        from pyphase import forked_compile

        if forked_compile.wanted():
            forked_compile.warm_up(target)

    thread = threading.Thread(target=run, name="pyphase-compile-prepare", daemon=True)
    _prepared = (thread, ready)
    thread.start()


def _wait_for_driver() -> None:
    """Return once Triton's driver is ready (`prepare_compiles`, started here if it was not yet);
    raises the driver's error where it cannot start."""
    prepare_compiles()
    if _prepared is not None:
        _prepared[1].wait()
    from triton.runtime.driver import driver

    driver.active.get_current_target()


def _fork_compiles(records: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]],
                   n: int) -> tuple[Any, Iterator[int], Any]:
    """Start the forked compiles of `records` (`forked_compile`) if wanted and worth it; returns the
    pool (None if not started), the records' indices in the order to warm them up (those with
    nothing to compile first, then each job's records as its process finishes it) and their
    launchers being built meanwhile (`forked_compile.build_launchers`; None if none)."""
    from pyphase import forked_compile

    if not (forked_compile.wanted() and torch.cuda.is_available()):
        return None, iter(range(len(records))), None
    try:
        _wait_for_driver()  # planning asks the driver; its warm-up may go on meanwhile
        jobs, of_record = forked_compile.plan(records)
        if _prepared is not None:
            _prepared[0].join()  # the warm-up is done: the children inherit it
        if len(jobs) < 2:
            return None, iter(range(len(records))), None
        pool = forked_compile.Pool(jobs, forked_compile.workers(min(n, len(jobs))))
    except Exception as e:  # noqa: BLE001 - e.g. another Triton's internals: the thread pool compiles all
        print(f"warning: compiling Triton kernels in forked processes failed ({type(e).__name__}: {e}); "
              "compiling them in threads", file=sys.stderr)
        return None, iter(range(len(records))), None
    launchers = forked_compile.build_launchers(jobs)

    def order() -> Iterator[int]:
        by_job: dict[int, list[int]] = {}
        for r, j in enumerate(of_record):
            if j is None:
                yield r
            else:
                by_job.setdefault(j, []).append(r)
        for j in pool.done():
            yield from by_job.get(j, [])
    return pool, order(), launchers


class _Loader:
    """Loads compiled kernels onto the GPU and builds their launchers (`_init_handles`, Triton's
    private loader, what each first launch would do one after another), each in `loaders` as soon
    as its compile finishes, while the slower ones still compile (loading after the last compile
    took 1.24 s of phase3a's cold setup, results/bench/setup_profile_h100_a4e0fdb.txt). Measured on
    one H100, phase3a shortened to 300 steps with an empty Triton cache each time: setup 4.68-4.85 s
    against 4.92-5.01 s loading after the last compile (results/bench/setup_load_early_ab_h100_1d718e2.txt).
    The first load also sets up Triton's driver utilities, so the others wait for it. Each load
    first calls `before` (if given: waiting for the launchers built meanwhile,
    `forked_compile.build_launchers`, rather than building one again). `loads`: the loads' futures."""

    def __init__(self, loaders: ThreadPoolExecutor, before: Callable[[], None] | None = None) -> None:
        self.loaders = loaders
        self.before = before
        self.loads: list[Any] = []
        self.device = torch.cuda.current_device() if torch.cuda.is_available() else None
        self._first, self._first_done = threading.Lock(), threading.Event()
        self._seen: dict[int, Any] = {}  # id -> the object, kept so that no id is reused meanwhile

    def _load(self, get: Callable[[], Any]) -> None:
        kernel = get()  # waits for the kernel's compile
        init = getattr(kernel, "_init_handles", None) if kernel is not None else None
        if init is None:
            return
        if self.before is not None:
            self.before()
        if self.device is not None:
            torch.cuda.set_device(self.device)
        if not self._first_done.is_set():
            with self._first:
                if not self._first_done.is_set():
                    init()
                    self._first_done.set()
                    return
        init()

    def add(self, c: Any) -> None:
        """Load `c` (what a warm-up returned) once its compile is done."""
        if c is None or id(c) in self._seen:
            return
        self._seen[id(c)] = c
        d = getattr(c, "__dict__", {})
        if "finalize_compile" in d:  # Triton's FutureKernel: its compile's future, taken now (dropped
            fut = d.get("future")    # once finalized), or the kernel it already finalized
            get = fut.result if fut is not None else (lambda k=d.get("kernel"): k)
        else:  # compiled before (Triton's in-process cache)
            get = lambda k=c: k  # noqa: E731
        self.loads.append(self.loaders.submit(self._load, get))


try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

if triton is not None:

    @triton.jit
    def mul_rn(a, b, RN: tl.constexpr):
        """a · b rounded to fp32 on its own. With RN (on the GPU) as PTX's mul.rn, which the
        compiler does not fuse with an addition or subtraction that follows into one multiply-add:
        where a mask's select stands between them it cannot, and a tile without the mask must give
        the masked tile's bits (`attention`'s scores, the add + LayerNorm backward's branch
        gradient). Triton's interpreter (no inline PTX) fuses nothing anyway."""
        if RN:
            out = tl.inline_asm_elementwise("mul.rn.f32 $0, $1, $2;", "=r,r,r", [a, b], dtype=tl.float32,
                                            is_pure=True, pack=1)
        else:
            out = a * b
        return out

    @triton.jit
    def below(offs, n, WHOLE: tl.constexpr):
        """The bounds mask offs < n, or, where WHOLE (the tiles cover the range exactly,
        `unmasked`), a constant true mask that Triton folds away with the loads, stores and selects
        it guards."""
        if WHOLE:
            ok = tl.full(offs.shape, 1, tl.int1)
        else:
            ok = offs < n
        return ok

    @triton.jit
    def _sum_parts_kernel(PART, OUT, R, C, BR: tl.constexpr, BC: tl.constexpr):
        cb = tl.program_id(0)
        k = tl.program_id(1).to(tl.int64)
        cols = cb * BC + tl.arange(0, BC)
        c_ok = cols < C
        acc = tl.zeros([BC], tl.float32)
        for r0 in range(0, R, BR):
            rows = r0 + tl.arange(0, BR)
            m = (rows < R)[:, None] & c_ok[None, :]
            acc += tl.sum(tl.load(PART + (k * R + rows[:, None]) * C + cols[None, :], mask=m, other=0.0), 0)
        tl.store(OUT + k * C + cols, acc, mask=c_ok)


def register_cap(cap: int, x: Tensor) -> dict[str, int]:
    """Launch options for a register cap of `cap` per thread (Triton's `maxnreg`; 0: none) for a
    kernel on x's device: only on CUDA, not in the interpreter."""
    return {"maxnreg": cap} if cap and x.is_cuda else {}


def interpreted() -> bool:
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET; on the CPU, in the tests),
    where there is no inline PTX and its bf16 products are not the GPU's."""
    import triton

    knobs = getattr(triton, "knobs", None)  # Triton < 3.4 has none (pyproject allows torch >= 2.4)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unmasked(whole: bool) -> bool:
    """Whether a kernel may drop its bounds masks: `whole` (its tiles cover the rows and columns
    exactly), unless PYPHASE_MASKS=all, which keeps every mask (for A/B timing; the values are the
    same either way, only the instructions differ). Used by the MLP's kernels (`mlp._launch`), the
    add + LayerNorm backward and the QKV GEMM (`linear`); the attention kernels' own switch is
    PYPHASE_ATTN_MASK (`attention._tiles`). Where a dropped mask's select was all that kept a
    product apart from a later sum, the product is rounded on its own (`mul_rn`): the add +
    LayerNorm backward's `acc + dx · rstd` fused into one multiply-add without it, and a phase3a
    run on the H100 gave other bits (session 21)."""
    return whole and os.environ.get("PYPHASE_MASKS", "").lower() != "all"


def autocast_operands(dev: str, *ts: Tensor) -> tuple[Tensor, ...]:
    """The operands cast to the autocast dtype where autocast is on for device type dev (as torch.bmm's
    autocast casts them), else as they are."""
    if not torch.is_autocast_enabled(dev):
        return ts
    dt = torch.get_autocast_dtype(dev)
    return tuple(t.to(dt) for t in ts)


def pad_width(n: int) -> int:
    """The on-chip width for n columns (d, V, a hidden width): the next power of two, at least 16
    (tl.dot's smallest operand)."""
    return max(16, triton.next_power_of_2(n))


def sum_parts(part: Tensor, block: tuple[int, int] | None = None) -> Tensor:
    """(K, R, C) fp32 partial sums (contiguous) → their sum over R, (K, C) fp32, in a fixed order.
    Each program sums a block of columns, `block` = (rows, columns) at a time; by default 512
    columns for few partials, 64 for many, narrower where that leaves fewer than ~2 programs per SM,
    and ~4,096 elements a load. The block sets the summation order (tl.sum's tree over a block's rows
    follows its layout), so it is chosen for a pack of PARTIALS_PACK models whatever K is."""
    kk, r, c = part.shape
    if not part.is_contiguous() or part.dtype != torch.float32:
        raise ValueError(f"sum_parts: expected contiguous fp32 partial sums, got {part.dtype} strides {part.stride()}")
    if block is None:  # from benches/bench_sum_parts.py on the H100 (results/bench/bench_sum_parts_*.txt)
        bc = 512 if r <= 16 else 64
        while bc > 16 and triton.cdiv(c, bc) * PARTIALS_PACK < 264:
            bc //= 2
        block = (min(max(2, triton.next_power_of_2(r)), max(8, 4096 // bc)), bc)
    br, bc = block
    out = part.new_empty(kk, c)
    launch(_sum_parts_kernel, (triton.cdiv(c, bc), kk))(part, out, r, c, BR=br, BC=bc, num_warps=4)
    return out


_EAGER: dict[str, Callable[..., Any]] = {}


def register_autograd(op: Any, backward: Callable[..., Any], setup_context: Callable[..., None],
                      stream: tuple[int | None, int] | None = None) -> None:
    """`op.register_autograd(backward, setup_context=...)`, and the same as a plain autograd
    Function over op's undecorated function for `call`. `backward` sees `ctx.eager` True there, and
    None (not zeros) for the gradient of any output nobody used: measured on the H100, uncompiled,
    filling those with zeros (log-sum-exps, row statistics, the MLP's saved pre-activation, the final
    LayerNorm's residual stream) took 0.4 ms of a K = 5, B = 256 step.

    `stream` = (input index or None, output index) of an op that reads and writes the residual
    stream also registers it for `call_stream` (see there)."""

    def setup(ctx: Any, inputs: Any, output: Any) -> None:
        setup_context(ctx, inputs, output)
        ctx.set_materialize_grads(False)

    op.register_autograd(backward, setup_context=setup)
    raw = getattr(op, "_init_fn", None)  # torch.library's CustomOpDef keeps the function it wraps
    if raw is None:  # another torch: always the custom op
        _EAGER[op._qualname] = op
        return

    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *args: Any) -> Any:
            out = raw(*args)
            setup(ctx, args, out)
            ctx.eager = True
            return out

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Any:
            return backward(ctx, *grads)

    _EAGER[op._qualname] = Eager.apply
    if stream is not None:
        _STREAM[op._qualname] = _stream_function(raw, setup, backward, *stream)


# The residual stream's gradient in a lower precision than the stream (PYPHASE_RESIDUAL=bf16grad,
# model.py). Autograd casts every gradient to the dtype of the tensor it belongs to, so an fp32
# stream would get an fp32 gradient whatever the ops return. Instead the ops that write the stream
# mark it non-differentiable and return beside it a "carrier": a tensor of the stream's shape in the
# gradient's dtype, with no storage of its own (stride 0, never read). The op that reads the stream
# takes the carrier as its last input, and its backward pass returns the stream's gradient as the
# carrier's. The fp32 stream, the forward pass and its bits stay as they are.
_STREAM: dict[str, Callable[..., Any]] = {}


def carrier(like: Tensor, dtype: torch.dtype) -> Tensor:
    """A stride-0 tensor of like's shape in dtype whose gradient carries like's (its values are
    never read)."""
    return torch.empty((), dtype=dtype, device=like.device).expand(like.shape)


def _stream_function(raw: Callable[..., Any], setup: Callable[..., None], backward: Callable[..., Any],
                     s_in: int | None, s_out: int) -> Callable[..., Any]:
    class Stream(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, grad_dtype: torch.dtype, *args: Any) -> Any:
            if s_in is not None:
                args = args[:-1]  # the carrier
            out = raw(*args)
            setup(ctx, args, out)
            ctx.eager = True
            ctx.grad_dtype = grad_dtype
            ctx.mark_non_differentiable(out[s_out])
            return (*out, carrier(out[s_out], grad_dtype))

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Any:
            *outs, g_stream = grads
            outs[s_out] = g_stream
            ins = list(backward(ctx, *outs))
            if s_in is None:
                return (None, *ins)
            g_in, ins[s_in] = ins[s_in], None
            return (None, *ins, g_in)

    return Stream.apply


def call_stream(op: Any, grad_dtype: torch.dtype, *args: Any) -> Any:
    """op(*args) for an op registered with `stream`, its stream's gradient in grad_dtype (eager
    only, not under torch.compile): the stream input (if any) comes with its carrier as one more
    argument, last; the stream output comes out non-differentiable, its carrier as one more output,
    last. The op's backward pass finds grad_dtype in `ctx.grad_dtype`."""
    return _STREAM[op._qualname](grad_dtype, *args)


class _Rejoin(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, c: Tensor) -> Tensor:
        ctx.dtype = c.dtype
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: Tensor | None) -> Any:
        return None, (None if g is None else g.to(ctx.dtype))


def rejoin(x: Tensor, c: Tensor) -> Tensor:
    """The stream x (non-differentiable) as a differentiable tensor again, its gradient going to the
    carrier c: for ops without a `call_stream` form (fallbacks) after one that had one."""
    return _Rejoin.apply(x, c)


def call(op: Any, *args: Any) -> Any:
    """op(*args): the custom op under torch.compile, its plain autograd Function otherwise."""
    if torch.compiler.is_compiling():
        return op(*args)
    return _EAGER[op._qualname](*args)


def backward_op(ctx: Any, op: Any) -> Callable[..., Any]:
    """An op called inside a backward pass: its undecorated function in the plain Function's
    backward (`ctx.eager`), the custom op in the one torch.library registered."""
    return getattr(op, "_init_fn", op) if getattr(ctx, "eager", False) else op
