# Sum ncu's raw CSV (one row per kernel launch) into per-kernel-name totals: launches, time, DRAM bytes.
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hdr_i = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
hdr = rows[hdr_i]
data = [r for r in rows[hdr_i + 1:] if len(r) == len(hdr) and r[0].strip().isdigit()]
col = {n: hdr.index(n) for n in hdr}
def num(r, n):
    v = r[col[n]].replace(",", "")
    try:
        return float(v)
    except ValueError:
        return 0.0
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
for r in data:
    name = r[col["Kernel Name"]].split("(")[0][:60]
    a = agg[name]
    a[0] += 1
    a[1] += num(r, "gpu__time_duration.sum")
    a[2] += num(r, "dram__bytes_read.sum")
    a[3] += num(r, "dram__bytes_write.sum")
tot = [sum(a[i] for a in agg.values()) for i in range(4)]
bw = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0e12
print(f"{'kernel':60} {'n':>4} {'time us':>10} {'read MB':>9} {'write MB':>9} {'TB/s':>6} {'floor us':>9}")
for name, a in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    t = a[1] / 1e3  # ns -> us
    mb_r, mb_w = a[2] / 1e6, a[3] / 1e6
    print(f"{name:60} {a[0]:4d} {t:10.1f} {mb_r:9.1f} {mb_w:9.1f} {(a[2] + a[3]) / (a[1] * 1e-9) / 1e12 if a[1] else 0:6.2f} {(a[2] + a[3]) / bw * 1e6:9.1f}")
t = tot[1] / 1e3
print(f"{'TOTAL':60} {int(tot[0]):4d} {t:10.1f} {tot[2] / 1e6:9.1f} {tot[3] / 1e6:9.1f} {(tot[2] + tot[3]) / (tot[1] * 1e-9) / 1e12:6.2f} {(tot[2] + tot[3]) / bw * 1e6:9.1f}")
print(f"(floor us: the kernel's DRAM bytes at {bw / 1e12:.1f} TB/s; times are ncu's, one kernel at a time, clocks uncontrolled)")
