"""Why a forked compile child's first job takes ~0.8 s longer than the same compile alone: children forked
from the trainer's parent (torch, CUDA and two packs' trainers live) compile three of phase3a's jobs one
after another, each child with an empty Triton cache, one child at a time; per job its wall time and the
child's minor page faults (copy-on-write shows there). Variants: a plain fork (as forked_compile); the
parent's objects frozen (gc.freeze) before the fork; the child's garbage collector off."""
import gc
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time

import torch  # noqa: F401

from pyphase import forked_compile
from pyphase.train import PackTrainer

spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bt)
corpus, shape = bt.load_corpus(None), bt.ModelShape()
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tc_plan_")
records = []
trainers = []
for b in (128, 256):
    trainers.append(PackTrainer([bt._cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, 100, shape) for i in range(5)], corpus, "cuda"))
    records += trainers[-1].kernel_launches()
jobs, _ = forked_compile.plan(records)
from triton.backends.compiler import GPUTarget  # noqa: E402
forked_compile.warm_up(jobs[0].target)


def name(i):
    return getattr(jobs[i].fn, "__name__", None) or jobs[i].fn.fn.__name__


pick = [i for i in range(len(jobs)) if name(i) == "_add_ln_bwd_kernel"][:2] + \
       [i for i in range(len(jobs)) if name(i) == "_attn_fwd_kernel"][:1] + \
       [i for i in range(len(jobs)) if name(i) == "_mlp_block_fwd_kernel"][:1]
print("parent RSS MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "jobs", [name(i) for i in pick], flush=True)


def child(label, before=None, in_child=None):
    if before:
        before()
    r, w = os.pipe()
    t_fork = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tc_child_")
        if in_child:
            in_child()
        out = [("fork->child runs", time.perf_counter() - t_fork, 0)]
        for i in pick:
            f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            forked_compile.compile_job(jobs[i])
            out.append((name(i), time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0))
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    gc.unfreeze()
    print(label + ": " + ", ".join(f"{n} {t:.3f} s / {f} faults" for n, t, f in json.loads(data)), flush=True)


for rnd in range(2):
    child(f"round {rnd} plain fork")
    child(f"round {rnd} gc.freeze before fork", before=gc.freeze)
    child(f"round {rnd} gc off in child", in_child=gc.disable)
# the same jobs in this process (no fork), an empty cache
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tc_self_")
for i in pick:
    f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    forked_compile.compile_job(jobs[i])
    print(f"in the parent: {name(i)} {time.perf_counter() - t:.3f} s / {resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0} faults", flush=True)
