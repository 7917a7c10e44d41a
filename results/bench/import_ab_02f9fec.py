"""Import time of torch + triton + polars: one after the other, or polars (and triton) in a thread
started first. Usage: python3 .dev/import_ab.py seq|thread"""
import sys, threading, time
t0 = time.perf_counter()
mode = sys.argv[1]
if mode == "thread":
    def bg():
        import polars  # noqa: F401
    th = threading.Thread(target=bg, daemon=True)
    th.start()
import torch  # noqa: F401
t1 = time.perf_counter()
import triton  # noqa: F401
t2 = time.perf_counter()
if mode == "thread":
    th.join()
import polars  # noqa: F401
t3 = time.perf_counter()
print(f"{mode}: torch {t1 - t0:.3f} s, +triton {t2 - t1:.3f}, +polars {t3 - t2:.3f}, total {t3 - t0:.3f}")
