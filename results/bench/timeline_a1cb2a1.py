"""Wall-clock timeline of `python3 -m pyphase ...` from the process's own start (kernel's start time
from /proc), by wrapping pyphase's phases; prints one line per event to stderr and writes JSON.
Usage: python3 .dev/timeline.py OUT.json train phase3a --device cuda ..."""
import atexit
import json
import os
import sys
import threading
import time


def _since_start() -> float:
    with open("/proc/self/stat") as f:
        start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - start_ticks / os.sysconf("SC_CLK_TCK")


T0 = time.perf_counter() - _since_start()
EV: list[tuple[float, str]] = []
_lock = threading.Lock()


def mark(name: str) -> None:
    t = time.perf_counter() - T0
    with _lock:
        EV.append((t, name))
    print(f"[timeline] {t:8.3f} s  {name}", file=sys.stderr, flush=True)


out_json = sys.argv[1]
mark("interpreter up (timeline.py runs)")
try:  # as pyphase.console does first
    from pyphase import coldstart  # noqa: E402
    _w = coldstart.start(coldstart.packages_for(sys.argv[2:]))
    mark(f"coldstart.start: {len(_w.procs)} workers, {_w.files} files, finder {'on for ' + ','.join(sorted(_w.finder.roots)) if _w.finder else 'off'}")
except ImportError:
    pass
import pyphase.cli as cli  # noqa: E402
mark("import pyphase.cli")
import torch  # noqa: E402
mark("import torch")
import triton  # noqa: E402,F401
mark("import triton")
import polars  # noqa: E402,F401
mark("import polars")
from pyphase import data, kernels, sweep, train  # noqa: E402
mark("import pyphase.sweep/train/kernels (all kernel modules)")


def wrap(mod, name, label=None, enter=True):
    f = getattr(mod, name)
    label = label or name

    def g(*a, **k):
        if enter:
            mark(f"{label} begin")
        try:
            return f(*a, **k)
        finally:
            mark(f"{label} end")
    setattr(mod, name, g)


from pyphase import forked_compile  # noqa: E402

wrap(forked_compile, "plan")
wrap(kernels, "start_compiles")
wrap(kernels, "take_early_compiles", enter=False)
_close = forked_compile.Pool.close


def close(self):
    mark(f"forked compiles: {len(self.times)} jobs, times {sorted(round(t, 2) for t in self.times.values())}, "
         f"errors {self.errors}")
    mark("forked compiles by kernel: " + ", ".join(f"{self.names.get(i)} {t:.2f}" for i, t in sorted(self.times.items(), key=lambda x: -x[1])))
    _close(self)


forked_compile.Pool.close = close
_cj = forked_compile._compile_spec
_cs = forked_compile._child_start
_sub = forked_compile.Pool.submit


def _timed_compile_spec(spec):
    mark(f"job {spec[1]} start (pid {os.getpid()})")
    r = _cj(spec)
    mark(f"job {spec[1]} end")
    return r


def _timed_child_start(target):
    mark(f"child start (pid {os.getpid()})")
    _cs(target)
    mark(f"child warmed (pid {os.getpid()})")


def _timed_submit(self, i, job):
    mark(f"submit job {i} {forked_compile.kernel_name(job)}")
    _sub(self, i, job)


forked_compile._compile_spec = _timed_compile_spec
forked_compile._child_start = _timed_child_start
forked_compile.Pool.submit = _timed_submit
wrap(data, "load_corpus")
wrap(sweep, "_init_process_group")
wrap(sweep, "git_commit")
wrap(kernels, "compile_all")
wrap(train, "capture_steps")
wrap(train, "_lockstep")
wrap(train, "precompile_together")
wrap(sweep, "write_run", enter=False)
_init = train.PackTrainer.__init__


def _flt():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def init(self, *a, **k):
    mark(f"PackTrainer.__init__ begin (minor faults {_flt()})")
    _init(self, *a, **k)
    mark(f"PackTrainer.__init__ end (minor faults {_flt()})")


train.PackTrainer.__init__ = init
for meth in ("begin", "warm_up", "kernel_launches", "outputs"):
    f0 = getattr(train.PackTrainer, meth)

    def mk(f0=f0, meth=meth):
        def g(self, *a, **k):
            mark(f"PackTrainer.{meth} begin (K={self.k})")
            try:
                return f0(self, *a, **k)
            finally:
                mark(f"PackTrainer.{meth} end")
        return g
    setattr(train.PackTrainer, meth, mk())


def _dump():
    mark("atexit")
    with open(out_json, "w") as f:
        json.dump({"start_epoch": time.time() - (time.perf_counter() - T0), "events": EV}, f, indent=0)


atexit.register(_dump)
_fast = getattr(cli, "_exit_without_teardown", None)
if _fast is not None:
    def fast():
        mark("fast exit")
        _dump()
        _fast()
    cli._exit_without_teardown = fast
sys.argv = ["pyphase"] + sys.argv[2:]
try:
    getattr(cli, "console", cli.main)()
finally:
    mark("cli.main returned")
