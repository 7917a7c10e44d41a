# Session 44: the trainer on a fresh single H200: cold phase3a under the timeline
# wrapper (compared with rerun94 (one H200) and rerun95 (torchrun, two H200s) bit for bit), then bench_train (the issue's three speeds).
# Usage: bash .dev/run199.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run199.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed|File system inputs" $OUT/r/timeline_cold.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
python3 - <<'PY' | tee $OUT/r/phase3a_vs_rerun94_95.txt
import os, polars as pl
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
a = pl.read_csv(os.environ["OUT"] + "/r/phase3a_summary.csv", infer_schema_length=0)
for ref in ["results/phase3a/rerun94_seed0_summary.csv", "results/phase3a/rerun95_h200x2_torchrun_seed0_summary.csv"]:
    b = pl.read_csv(ref, infer_schema_length=0)
    j = a.join(b, on=["batch_size", "lr"], suffix="_o")
    print(ref, "rows", j.height, "bit for bit:", {c: bool((j[c].fill_null("") == j[c + "_o"].fill_null("")).all()) for c in cols})
PY
timeout 200 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/r/bench_train.json > $OUT/r/bench_train.txt 2>&1; tail -14 $OUT/r/bench_train.txt
mkdir -p /tmp/ps
for k in 5 10; do
  ( cd benches && timeout 90 python3 profile_step.py --k $k --b 256 --variants eager,eager --out /tmp/ps ) > $OUT/r/profile_k${k}_b256.txt 2>&1
  echo "K=$k: $(grep '^{"variant"' $OUT/r/profile_k${k}_b256.txt | python3 -c "import sys, json; print([(round(r['ms_per_step'], 3), round(r.get('joules_per_step', 0), 3), round(r.get('joules_per_step', 0) / ($k * 256 * 256) * 1e6, 2)) for r in map(json.loads, sys.stdin)], '(ms, J a step, J/Mtok)')")"
done
cd $OUT && tar czf results.tgz r && rm -rf r
