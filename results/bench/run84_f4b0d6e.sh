source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
( export TRITON_CACHE_DIR=/tmp/tc_cmp; for m in none whole regions; do PYPHASE_COMPILE=$m timeout 150 python3 -m pyphase train smoke --device cuda --out /root/smoke_$m --no-progress 2>&1 | tail -2; done ) > $OUT/smoke_compile.txt 2>&1; cat $OUT/smoke_compile.txt
python3 - <<'PY' | tee -a $OUT/smoke_compile.txt
import polars as pl, glob
for m in ("none", "whole", "regions"):
    fs = sorted(glob.glob(f"/root/smoke_{m}/smoke/*/summary.parquet"))
    if not fs:
        print(m, "no summaries"); continue
    d = pl.concat([pl.read_parquet(f) for f in fs], how="diagonal_relaxed")
    print(m, d.select("run_id", "final_train_loss", "final_val_loss", "converged").rows())
PY
