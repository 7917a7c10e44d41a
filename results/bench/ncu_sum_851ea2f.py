# Sum ncu's raw CSV (one row per kernel launch) into per-kernel-name totals: launches, time, DRAM bytes,
# L2 bytes (lts__t_bytes) and warp instructions (sm__inst_executed) where measured; TOTAL row, and JSON totals.
import csv, sys, collections, json
rows = list(csv.reader(open(sys.argv[1])))
hdr_i = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
hdr = rows[hdr_i]
data = [r for r in rows[hdr_i + 1:] if len(r) == len(hdr) and r[0].strip().isdigit()]
col = {n: hdr.index(n) for n in hdr}
M = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_bytes.sum", "sm__inst_executed.sum"]
def num(r, n):
    if n not in col:
        return 0.0
    v = r[col[n]].replace(",", "")
    try:
        return float(v)
    except ValueError:
        return 0.0
agg = collections.defaultdict(lambda: [0] + [0.0] * len(M))
for r in data:
    a = agg[r[col["Kernel Name"]].split("(")[0][:60]]
    a[0] += 1
    for i, n in enumerate(M):
        a[i + 1] += num(r, n)
tot = [sum(a[i] for a in agg.values()) for i in range(len(M) + 1)]
print(f"{'kernel':60} {'n':>4} {'time us':>10} {'read MB':>9} {'write MB':>9} {'L2 MB':>9} {'Minst':>8} {'DRAM TB/s':>9}")
def line(name, a):
    print(f"{name:60} {int(a[0]):4d} {a[1] / 1e3:10.1f} {a[2] / 1e6:9.1f} {a[3] / 1e6:9.1f} {a[4] / 1e6:9.1f} {a[5] / 1e6:8.2f} "
          f"{(a[2] + a[3]) / (a[1] * 1e-9) / 1e12 if a[1] else 0:9.2f}")
for name, a in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    line(name, a)
line("TOTAL", tot)
print("(times are ncu's, one kernel at a time, clocks uncontrolled; inst: warp instructions executed)")
json.dump({"kernels": int(tot[0]), "time_us": tot[1] / 1e3, "dram_gb": (tot[2] + tot[3]) / 1e9, "l2_gb": tot[4] / 1e9,
           "warp_inst": tot[5]}, open(sys.argv[2], "w"), indent=1)
