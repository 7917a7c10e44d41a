source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
timeout 230 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -16 $OUT/bench_train.txt
CMD="python3 -m pyphase train phase3b --device cuda --seeds 1 --out /root/t3b --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3b_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3b_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3b_timing.txt | head -40
python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "H100 (device tool nvidia-h100-x1), commit $1, after bench_train.py in the same call (warm Triton cache); packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/phase3b_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3b_summary.csv"); b = pl.read_csv("results/phase3b/rerun_b46f7bd_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged"]
j = a.join(b, on=["batch_size", "lr", "gradient_clip"], suffix="_o", nulls_equal=True)
print(len(j), "rows; summary equal to b46f7bd's bit for bit:", all((j[c] == j[c + "_o"]).all() for c in cols))
print(a.select("batch_size", "lr", "gradient_clip", "final_val_loss", "converged", "wall_time_s", "setup_time_s"))
PY
