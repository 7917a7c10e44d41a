"""Where the cold start's time goes: phase3a shortened to 300 steps under cProfile (device-only)."""
import cProfile, pstats, sys, time, io
t0 = time.perf_counter()
pr = cProfile.Profile()
pr.enable()
from pyphase.cli import app
try:
    app(["train", ".dev/phase3a_short.toml", "--device", "cuda", "--seeds", "1", "--out", "/root/short", "--no-progress"])
except SystemExit:
    pass
pr.disable()
print(f"total in-process {time.perf_counter() - t0:.2f} s")
s = io.StringIO()
st = pstats.Stats(pr, stream=s).sort_stats("cumulative")
st.print_stats(r"pyphase|importlib._bootstrap.*_find_and_load\b|compile_all|_load_all|warmup|synchronize|replay|capture|cudagraph", 60)
print(s.getvalue()[:12000])
