"""Compare two sweep output folders run by run: every summary and step column that does not measure
time must be equal bit for bit (NaN equal to NaN). Usage: cmp_runs.py EXP_DIR_A EXP_DIR_B [IGNORED,COLUMNS]"""
import math
import sys
from pathlib import Path

import polars as pl

TIMED = {"wall_time_s", "tokens_per_s", "setup_time_s", "git_commit", "device"}
if len(sys.argv) > 3:  # columns that name the pack, when packs of other sizes are compared
    TIMED |= set(sys.argv[3].split(","))
a_dir, b_dir = Path(sys.argv[1]), Path(sys.argv[2])
runs = sorted(p.name for p in a_dir.iterdir() if (p / "summary.parquet").exists())
runs_b = sorted(p.name for p in b_dir.iterdir() if (p / "summary.parquet").exists())
print(f"runs: {len(runs)} in A, {len(runs_b)} in B, same ids: {runs == runs_b}")
bad = 0
for r in runs:
    for f in ("summary.parquet", "steps.parquet"):
        a, b = pl.read_parquet(a_dir / r / f), pl.read_parquet(b_dir / r / f)
        if a.shape != b.shape or a.columns != b.columns:
            print(r, f, "shape/columns differ", a.shape, b.shape); bad += 1; continue
        for c in a.columns:
            if c in TIMED:
                continue
            x, y = a[c].to_list(), b[c].to_list()
            same = all((u == v) or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))
                       for u, v in zip(x, y))
            if not same:
                bad += 1
                diffs = [abs(u - v) for u, v in zip(x, y) if isinstance(u, float) and isinstance(v, float)]
                first = next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), None)
                print(r, f, c, "DIFFERS", f"first at row {first}", f"max |diff| {max(diffs) if diffs else None}")
print("ALL EQUAL bit for bit" if bad == 0 and runs == runs_b else f"{bad} columns differ")
