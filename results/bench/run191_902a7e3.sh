# A second fresh H200: the cold phase3a again (is run190's 88.18 s repeatable?), then a K = 5, B = 256
# step's energy (profile_step.py) and its DRAM bytes, L2 bytes and warp instructions (ncu, as run177 on
# the H100), for the energy split on this GPU. Usage: bash .dev/run191.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run191.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv,noheader | tee $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu
( nvidia-smi --query-gpu=$Q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$Q --format=csv -l 1 ) > $OUT/r/smi.csv 2>&1 &
SMI=$!
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed|File system inputs" $OUT/r/timeline_cold.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper; the second such run of the session)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/r/phase3a_summary.csv", infer_schema_length=0); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv", infer_schema_length=0)
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
PY
timeout 150 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager --out /tmp/prof > $OUT/r/profile_energy_k5_b256.txt 2>&1
grep -o '"variant": "[^"]*"\|"ms_per_step": [0-9.]*\|"joules_per_step": [0-9.]*\|"watts": [0-9.]*\|"sm_mhz": [0-9.]*\|"power_capped": [0-9.]*' $OUT/r/profile_energy_k5_b256.txt | paste - - - - - -
kill $SMI; pkill -f 'nvidia-smi --query'; sleep 1
B=256 timeout 200 ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,sm__inst_executed.sum --csv --page raw --log-file $OUT/r/ncu_raw_b256.csv python3 .dev/ncu_traffic.py 2>&1 | tail -2
python3 .dev/ncu_sum.py $OUT/r/ncu_raw_b256.csv $OUT/r/ncu_totals_b256.json | tee $OUT/r/ncu_traffic_k5_b256.txt | tail -2
gzip $OUT/r/ncu_raw_b256.csv
cd $OUT && tar czf results.tgz r && rm -rf r
