source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# 1. cold phase3a under the timeline wrapper (the first command on this machine)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1; END=$(date +%s.%N)
python3 - "$END" <<'PY'
import json, os, sys
d = json.load(open(os.environ["OUT"] + "/timeline_cold.json"))
print(f"process end - process start: {float(sys.argv[1]) - d['start_epoch']:.3f} s; atexit stamp {d['events'][-1][0]:.3f} s")
PY
grep -E "Elapsed" $OUT/timeline_cold.txt; grep -iE "error|Traceback|warn" -A12 $OUT/timeline_cold.txt | head -30
grep "\[timeline\]" $OUT/timeline_cold.txt | grep -v " job " | cut -c1-220
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 22, under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
# 2. launch configurations after session 21's register changes (bits-neutral knobs only)
MD="64,32,4,2/dw:64,32,4,3,4096"; BD="64,32,4,3,168/1,1,1"
sweep() {  # B then "mlp|block" pairs
  b=$1; shift
  for pair in "$@"; do
    m=${pair%%|*}; k=${pair##*|}
    timeout 90 python3 benches/profile_step.py --k 5 --b $b --variants eager --mlp-config "$m" --block-config "$k" --out /tmp/ps > /tmp/ps.txt 2>&1
    echo "B=$b mlp=$m block=$k $(grep '^{"variant"' /tmp/ps.txt | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(round(r["ms_per_step"],3), "ms", r["loss_step160"], r.get("regs_spills"), r.get("block_regs_spills"))')"
  done
}
mkdir -p /tmp/ps
sweep 256 "$MD|$BD" "64,32,4,2/dw:64,16,4,2,4096|$BD" "64,32,4,2/dw:64,16,4,3,4096|$BD" "64,32,4,2/dw:64,32,4,2,4096|$BD" "64,32,4,2/dw:64,64,4,2,4096|$BD" \
  "$MD|64,32,4,3,128/1,1,1" "$MD|64,32,4,2,128/1,1,1" "$MD|64,32,4,2,168/1,1,1" "$MD|64,32,4,4,168/1,1,1" "$MD|64,32,4,3,0/1,1,1" "$MD|$BD" 2>&1 | tee $OUT/config_sweep_b256.txt
