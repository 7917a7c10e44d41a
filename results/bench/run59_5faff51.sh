source .dev/setup.sh
for v in A_nokbias B_vbias_out; do
  export PYPHASE_GIT_COMMIT="$1 + .dev/attn_$v.py"
  ( /usr/bin/time -v timeout 200 python3 .dev/swap.py pyphase.attention .dev/attn_$v.py pyphase/__main__.py train phase3a --device cuda --seeds 1 --out /root/t_$v --no-progress ) > $OUT/phase3a_attn_${v}_timing.txt 2>&1
  grep -E "Elapsed" $OUT/phase3a_attn_${v}_timing.txt; grep -iE "Traceback" -A12 $OUT/phase3a_attn_${v}_timing.txt | head -20
  V=$v python3 - <<'PY'
import polars as pl, glob, os
v = os.environ["V"]
d = pl.concat([pl.read_parquet(f) for f in sorted(glob.glob(f"/root/t_{v}/phase3a/*/summary.parquet"))], how="diagonal_relaxed")
d.write_csv(os.environ["OUT"] + f"/phase3a_attn_{v}_summary.csv")
print(d.select("batch_size", "lr", "final_val_loss", "converged", "diverged_step", "wall_time_s"))
PY
done
