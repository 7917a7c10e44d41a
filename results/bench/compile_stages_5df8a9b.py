"""Each kernel phase3a compiles, compiled one after another in this process into an empty Triton cache,
with the time of each of the backend's stages (ttir, ttgir, llir, ptx, cubin)."""
import importlib.util
import os
import sys
import tempfile
import time

os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tc_stages_")
import torch  # noqa: E402
from triton.backends.nvidia import compiler as nvc  # noqa: E402

from pyphase import forked_compile  # noqa: E402
from pyphase.train import PackTrainer  # noqa: E402

T: dict[str, float] = {}
_orig = nvc.CUDABackend.add_stages


def add_stages(self, stages, options, *a, **k):
    _orig(self, stages, options, *a, **k)
    for ext, fn in list(stages.items()):
        def timed(src, md, fn=fn, ext=ext):
            t = time.perf_counter()
            try:
                return fn(src, md)
            finally:
                T[ext] = T.get(ext, 0.0) + time.perf_counter() - t
        stages[ext] = timed


nvc.CUDABackend.add_stages = add_stages
spec = importlib.util.spec_from_file_location("bt", "benches/bench_train.py")
bt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bt)
corpus, shape = bt.load_corpus(None), bt.ModelShape()
records = []
for b in (128, 256):
    tr = PackTrainer([bt._cfg(b, 10 ** (-3 + 0.25 * i), 1.0, i, 100, shape) for i in range(5)], corpus, "cuda")
    records += tr.kernel_launches()
jobs, _ = forked_compile.plan(records)
rows = []
for j in jobs:
    T.clear()
    t = time.perf_counter()
    forked_compile.compile_job(j)
    total = time.perf_counter() - t
    name = getattr(j.fn, "__name__", None) or j.fn.fn.__name__
    rows.append((total, name, dict(T)))
for total, name, st in sorted(rows, key=lambda r: -r[0]):
    print(f"{name:28s} {total:6.2f} s  " + "  ".join(f"{k} {v:5.2f}" for k, v in st.items()) +
          f"  (outside stages {total - sum(st.values()):5.2f})", flush=True)
print(f"sum {sum(r[0] for r in rows):.2f} s over {len(rows)} jobs; by stage: " +
      ", ".join(f"{k} {sum(r[2].get(k, 0) for r in rows):.2f}" for k in rows[0][2]), flush=True)
