# phase3b with three seeds at the current code, as the first pyphase command on a fresh H200 (the
# committed phase3b is at 422a5de/85c056e; run190 found B = 256, LR 0.05, clip 1.0 diverging at step
# 2,674 at this code): how often does that config diverge, and is seed 0 the same bits as run190's?
# Usage: bash .dev/run192.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run192.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader | tee $OUT/r/gpu.txt
CMD="python3 -m pyphase train phase3b --device cuda --seeds 3 --out /root/t3b --no-progress"
( /usr/bin/time -v timeout 400 $CMD ) > $OUT/r/phase3b_time.txt 2>&1; grep -E "Elapsed|Exit status" $OUT/r/phase3b_time.txt
python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2)" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/r/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/r/phase3b_provenance.json && cp /tmp/exp/phase3b/steps.parquet $OUT/r/phase3b_steps.parquet
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/r/phase3b_summary.csv", infer_schema_length=0).filter(pl.col("seed") == "0")
b = pl.read_csv("results/phase3b/rerun_902a7e3_h200_seed0_summary.csv", infer_schema_length=0)
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
a, b = (x.with_columns(pl.col("gradient_clip").fill_null("none")) for x in (a, b))
j = a.join(b, on=["batch_size", "lr", "gradient_clip"], suffix="_o")
print("seed 0 rows", j.height, "equal to run190's (K = 4 packs) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
PY
cut -d, -f1-3,5,10,14,17 $OUT/r/phase3b_summary.csv
cd $OUT && tar czf results.tgz r && rm -rf r
