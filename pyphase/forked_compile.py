"""Compiling Triton kernels in processes forked from this one, so that their compiles run in
parallel for real.

Why: `kernels.compile_all` compiled a sweep's kernels in a thread pool, but part of Triton's
compiler is Python (the kernel's AST turned into MLIR, the stages' driver code) and holds the GIL,
so the threads overlap only partly. Measured on H100 machines (16 cores; results/bench/README.md):
- a cold phase3a, the first command on a fresh machine: `compile_all` 5.51 s in threads
  (timeline_cold_h100_b2282e1.txt), 2.93 s forked (phase3a_seed0_timing_h100_b6ab03b.txt), on two
  machines;
- on one machine, phase3a cut to 300 steps, an empty Triton cache and the page cache dropped before
  each run: 4.64-5.36 s in threads, 3.72-4.81 s forked (setup_forked_cold_ab_h100_8ae9a62.txt,
  setup_warm_ab_h100_c3ed8ea.txt).

How: `plan(records)` runs each recorded launch's warm-up with Triton's `_do_compile` replaced by a
stand-in that writes down what it would compile (the kernel, its signature, constants, attributes,
options and target) and compiles nothing. `Pool(jobs, workers)` forks worker processes that inherit those
objects (and Triton, already imported: a fork starts at once) and compile each job exactly as
`_do_compile` would, `fn.compile(fn.ASTSource(...), target, options)`. That writes Triton's on-disk
cache, under the same key, so the parent's own warm-up of the job afterwards is a cache hit that
only loads the binary. A child never touches CUDA (the target is passed in), which is what makes
forking after CUDA's initialisation safe, as for torch's DataLoader workers; a job a child could
not compile is simply compiled again by the parent, which raises its error as before.

While the children compile, `build_launchers` builds in the parent's threads the C launchers
Triton 3.6 would otherwise build with gcc as each compiled kernel is loaded.

The stand-in answers only the planning thread; a launch from any other thread meanwhile compiles
as usual. `warm_up(target)`, run in the parent before forking (`kernels.prepare_compiles` starts it
during the dry pass), does once what every child's first compile would do again. `workers(n)` shares the machine's cores among the processes of one node under torchrun.

`wanted()`: only where `fork` exists and PYPHASE_COMPILE_PROCS is not "0" (which keeps the thread
pool alone, for A/B and as an escape hatch).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from typing import Any

# Longest the parent waits for the children in all (a normal compile takes seconds); past it, the
# jobs left are compiled by the parent and the children are stopped.
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Job:
    """One kernel specialisation to compile: the arguments of Triton's `JITFunction._do_compile`."""
    fn: Any
    signature: Any
    constexprs: Any
    options: Any
    attrs: Any
    target: Any


# The parent's jobs while a pool runs; forked children read theirs from here by index.
_JOBS: list[Job] = []


def wanted() -> bool:
    """Whether compiles go to forked processes (see the module docstring)."""
    if os.environ.get("PYPHASE_COMPILE_PROCS", "1") == "0":
        return False
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def workers(n: int) -> int:
    """At most `n` processes, and no more than three quarters of this process's share of the cores
    (all of the cores, or one core's worth each of LOCAL_WORLD_SIZE processes compiling the same
    kernels under torchrun), since the parent works meanwhile too (loading the compiled kernels,
    building their launchers in threads). On the H100 machine's 16 cores, phase3a's 25 compiles
    (cut to 300 steps, an empty Triton cache each run, results/bench/compile_workers_ab_h100_3092f51.txt)
    took 2.49 / 2.68 s with 16 workers, 2.21 / 2.19 s with 12, 2.27 / 2.39 s with 8 and 2.82 / 2.92 s
    with 6. PYPHASE_COMPILE_WORKERS sets the number instead (still at most `n`)."""
    cap = _env_int("PYPHASE_COMPILE_WORKERS", 0)
    if cap > 0:
        return max(1, min(n, cap))
    share = (os.cpu_count() or 1) // max(1, _env_int("LOCAL_WORLD_SIZE", 1))
    return max(1, min(n, share * 3 // 4 if share >= 4 else share))


def _env_int(name: str, default: int) -> int:
    """The integer in environment variable `name`, or `default` where it is unset or not one (these
    only tune how many processes compile; a bad value never stops a run)."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Seconds each kernel took to compile for the H100, one after another in one process (Triton 3.6,
# results/bench/compile_stages_h100_5df8a9b.txt): the pool starts the longest first, so that with
# fewer workers than jobs the longest one does not start last. Kernels not listed count 0.5 s.
COMPILE_S = {"_mlp_block_fwd_kernel": 1.58, "_head_bwd_kernel": 1.08, "_attn_bwd_dkdv_kernel": 0.92,
             "_mlp_bwd_dw_kernel": 0.88, "_head_fwd_kernel": 0.75, "_attn_bwd_dq_kernel": 0.72,
             "_embed_ln_bwd_kernel": 0.70, "_attn_fwd_kernel": 0.69, "_linear_bias_kernel": 0.50,
             "_embed_ln_fwd_kernel": 0.48, "_add_ln_bwd_kernel": 0.37, "_adamw_kernel": 0.26,
             "_refresh_kernel": 0.2, "_sum_parts_kernel": 0.16, "_gather_kernel": 0.13, "_sumsq_kernel": 0.07}


def longest_first(jobs: Sequence[Job]) -> list[int]:
    """Job indices by expected compile time (COMPILE_S), longest first; ties in plan order."""
    def name(j: Job) -> str:
        return getattr(j.fn, "__name__", None) or getattr(getattr(j.fn, "fn", None), "__name__", "")
    return sorted(range(len(jobs)), key=lambda i: -COMPILE_S.get(name(jobs[i]), 0.5))


def plan(records: Sequence[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]]) -> tuple[list[Job], list[int | None]]:
    """What warming up each recorded launch (kernel, grid, args, meta) would compile, compiling
    nothing: the distinct jobs, and for each record the index of its job (None where nothing is to
    be compiled: not a Triton kernel, or already compiled in this process)."""
    from triton.runtime.jit import JITFunction

    jobs: list[Job] = []
    index: dict[Any, int] = {}
    seen: list[int] = []
    real = JITFunction._do_compile
    planner = threading.get_ident()

    def stand_in(self: Any, key: Any, signature: Any, device: Any, constexprs: Any, options: Any, attrs: Any,
                 warmup: Any) -> Any:
        if threading.get_ident() != planner:  # another thread's launch meanwhile: compile it as ever
            return real(self, key, signature, device, constexprs, options, attrs, warmup)
        k = (id(self), repr(key))
        if k not in index:
            index[k] = len(jobs)
            jobs.append(Job(self, signature, constexprs, options, attrs, self.device_caches[device][2]))
        seen.append(index[k])
        return None  # nothing compiled: the warm-up returns at once

    of_record: list[int | None] = []
    JITFunction._do_compile = stand_in  # type: ignore[method-assign]
    try:
        for kernel, grid, args, meta in records:
            seen.clear()
            if isinstance(kernel, JITFunction):
                kernel.warmup(*args, grid=grid, **meta)
            of_record.append(seen[0] if seen else None)
    finally:
        JITFunction._do_compile = real  # type: ignore[method-assign]
    return jobs, of_record


def compile_job(j: Job) -> Any:
    """Compile `j` as `_do_compile` would, with the compile function and source class it uses (set
    on a kernel at its first launch on a device; Triton's own before that): into Triton's on-disk
    cache, or from it where the same job was compiled before. Returns the compiled kernel."""
    from triton.compiler import ASTSource, compile

    compile_, source = getattr(j.fn, "compile", compile), getattr(j.fn, "ASTSource", ASTSource)
    return compile_(source(j.fn, j.signature, j.constexprs, j.attrs), target=j.target, options=j.options.__dict__)


def _compile_job(i: int) -> tuple[float, str | None]:
    """In a child: `compile_job` of job i. Returns the seconds it took and None, or the error's
    text (the parent then compiles the job itself)."""
    t = time.perf_counter()
    try:
        compile_job(_JOBS[i])
    except Exception as e:  # noqa: BLE001 - reported to the parent, which compiles it again
        return time.perf_counter() - t, f"{type(e).__name__}: {e}"
    return time.perf_counter() - t, None


def warm_up(target: Any) -> None:
    """Do in this process, before forking, what each child's first compile would otherwise do again:
    import Triton's code generator and libdevice's bindings (imported on first use), and ask the
    target's backend for its hash (which runs `ptxas --version` once). Measured on the H100 machine
    with the page cache dropped before each run (results/bench/setup_warm_ab_h100_c3ed8ea.txt):
    `compile_all` 3.72-4.19 s with it, 3.74-4.41 s without, 4.64-5.03 s in threads; also compiling
    a one-line kernel here first gained nothing more (3.60-4.11 s). Failures are ignored: the
    children then do it themselves."""
    try:
        import triton.compiler.code_generator  # noqa: F401
        import triton.language.extra.libdevice  # noqa: F401
        from triton.compiler.compiler import make_backend

        make_backend(target).hash()
    except Exception:  # noqa: BLE001 - only a head start
        pass


def launcher_source(j: Job) -> str | None:
    """The C source of the launcher Triton builds for `j`'s kernel when it is first loaded (its
    `CudaLauncher`: the same constants, signature and no tensor descriptors, which pyphase's kernels
    do not use), or None where this Triton builds none that way."""
    from triton.backends.nvidia import driver as nv
    from triton.compiler import ASTSource

    if not hasattr(nv, "make_launcher"):
        return None
    src = getattr(j.fn, "ASTSource", ASTSource)(j.fn, j.signature, j.constexprs, j.attrs)
    constants = src.constants if hasattr(src, "constants") else {}
    constants = {((src.fn.arg_names.index(i),) if isinstance(i, str) else i): v for i, v in constants.items()}
    return nv.make_launcher(constants, dict(src.signature.items()), None)


def build_launcher(source: str) -> None:
    """Build (with gcc) the launcher module of `source` into Triton's cache, as `CudaLauncher` does,
    so that loading the kernel later finds it there."""
    from triton.backends.nvidia import driver as nv

    nv.compile_module_from_src(src=source, name="__triton_launcher", library_dirs=nv.library_dirs(),
                               include_dirs=nv.include_dirs, libraries=nv.libraries)


class Launchers:
    """Distinct launcher sources being built in threads (gcc runs outside the GIL); `wait()` until
    all are built (or failed: only a head start, the loader then builds its own), `close()`."""

    def __init__(self, sources: Sequence[str], workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyphase-launcher")
        self._futures = [self._pool.submit(self._build, s) for s in sources]

    @staticmethod
    def _build(source: str) -> None:
        try:
            build_launcher(source)
        except Exception:  # noqa: BLE001 - only a head start
            pass

    def wait(self) -> None:
        wait(self._futures)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_launchers(jobs: Sequence[Job], workers: int = 4) -> Launchers | None:
    """Start building the distinct launchers of `jobs` while the kernels compile: on a fresh machine
    Triton 3.6 builds one with gcc when each compiled kernel is loaded, which kept the parent 0.50-0.60
    s past the last compile; 0.04-0.28 s with this (H100, results/bench/timeline_cold_h100_cd054c7.txt,
    timeline_cold_h100_22db3a0.txt, setup_exit_ab_h100_22db3a0.txt). None where there is nothing to
    build (a Triton with one launcher for every kernel, PYPHASE_PREBUILD_LAUNCHERS=0)."""
    if os.environ.get("PYPHASE_PREBUILD_LAUNCHERS", "1") == "0":
        return None
    sources: dict[str, None] = {}
    for j in jobs:
        try:
            s = launcher_source(j)
        except Exception:  # noqa: BLE001 - another Triton's internals: the loader builds its own
            return None
        if s is None:
            return None
        sources[s] = None
    return Launchers(list(sources), workers) if sources else None


class Pool:
    """Forked workers compiling `jobs`; `done()` yields each job's index as it finishes."""

    def __init__(self, jobs: list[Job], workers: int) -> None:
        global _JOBS
        _JOBS = jobs
        import multiprocessing as mp

        self.times: dict[int, float] = {}
        self.errors: dict[int, str] = {}
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
        with warnings.catch_warnings():
            # Python 3.12 warns on any fork of a process with threads (CUDA's, torch's); the children
            # only compile (no CUDA, no locks another thread could hold: the import lock is reset).
            warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
            self._futures: dict[Future[tuple[float, str | None]], int] = {
                self._pool.submit(_compile_job, i): i for i in longest_first(jobs)}

    def done(self, timeout: float = TIMEOUT_S) -> Iterator[int]:
        """Job indices in the order their compiles finish; after `timeout`, the ones still running
        (the parent compiles those itself)."""
        left = dict(self._futures)
        try:
            for f in as_completed(self._futures, timeout=timeout):
                i = left.pop(f)
                try:
                    self.times[i], err = f.result()
                except Exception as e:  # noqa: BLE001 - a child died: the parent compiles the job
                    err = f"{type(e).__name__}: {e}"
                if err is not None:
                    self.errors[i] = err
                yield i
        except FuturesTimeout:
            for i in left.values():
                self.errors[i] = f"not compiled within {timeout:.0f} s"
                yield i

    def close(self) -> None:
        """Stop the workers (at once: every job is finished or no longer waited for)."""
        global _JOBS
        if any(not f.done() for f in self._futures):
            for p in list(getattr(self._pool, "_processes", {}).values()):
                if p.is_alive():
                    p.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        _JOBS = []
