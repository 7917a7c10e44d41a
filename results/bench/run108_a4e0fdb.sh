source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
( /usr/bin/time -v timeout 120 python3 .dev/prof_setup.py ) > $OUT/setup_profile.txt 2>&1
grep -E "Elapsed|total in-process" $OUT/setup_profile.txt; grep -E "setup_time|wall_time" $OUT/setup_profile.txt | head; python3 -c "
import polars as pl, glob; f=glob.glob('/root/short/phase3a_short/**/summary.csv', recursive=True); print(f[:2])
df=pl.concat([pl.read_csv(x) for x in f]) if f else None; print(df.select('batch_size','wall_time_s','setup_time_s').unique() if df is not None else '')" 2>&1 | tail -8
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( PYPHASE_RESIDUAL=fp32 /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_fp32_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_fp32_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3a_fp32_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=fp32 /usr/bin/time -v $CMD" --note "H100 (device tool nvidia-h100-x1), second command of the call (warm OS cache, cold Triton cache apart from the 300-step profile's), commit $1, PYPHASE_RESIDUAL=fp32 (the numerics before session 16); diverged models skipped by the kernels" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_fp32_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_fp32_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_fp32_summary.csv"); b = pl.read_csv("results/phase3a/rerun25_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("fp32 summary equal to rerun25 (3e908d5) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols if c + "_o" in j.columns})
print(a.select("batch_size", "lr", "final_val_loss", "diverged_step", "wall_time_s", "setup_time_s", "numerics"))
PY
for b in 256 128; do timeout 100 python3 benches/profile_step.py --k 5 --b $b --out /tmp/prof$b --variants eager,eager+PYPHASE_RESIDUAL=fp32,eager 2>&1 | grep -E "^\{|rror|by group" | cut -c1-700 > $OUT/steps_b$b.txt; cat $OUT/steps_b$b.txt; cp /tmp/prof$b/*.txt $OUT/ 2>/dev/null; done
