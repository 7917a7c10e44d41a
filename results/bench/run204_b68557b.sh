# Session 45: the opt-in bf16 residual stream (PYPHASE_RESIDUAL=bf16) at the current code on one H200:
# 1. the K = 5, B = 256 step, default against bf16, alternating (ms and joules a step);
# 2. phase3a with four seeds in bf16 (40 runs), to set against run202's four seeds at the default numerics.
# Usage: bash .dev/run204.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run204.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
( cd benches && timeout 150 python3 profile_step.py --k 5 --b 256 --variants eager,eager+PYPHASE_RESIDUAL=bf16,eager,eager+PYPHASE_RESIDUAL=bf16 --out /tmp/ps ) > $OUT/r/profile_k5_b256_bf16_ab.txt 2>&1
grep '^{"variant"' $OUT/r/profile_k5_b256_bf16_ab.txt | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print(r['variant'], round(r['ms_per_step'], 3), 'ms', round(r['joules_per_step'], 3), 'J', round(r['joules_per_step'] / (5 * 256 * 256) * 1e6, 2), 'J/Mtok', round(r['watts']), 'W', 'MFU', round(100 * r['mfu'], 1))
"
CMD="python3 -m pyphase train phase3a --device cuda --seeds 4 --out /root/t4 --no-progress"
( PYPHASE_RESIDUAL=bf16 /usr/bin/time -v timeout 420 $CMD ) > $OUT/r/phase3a_seeds4_bf16_time.txt 2>&1
grep -E "Elapsed|runs trained" $OUT/r/phase3a_seeds4_bf16_time.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -m pyphase results export phase3a --runs /root/t4 --dest /tmp/exp --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16 /usr/bin/time -v $CMD" --note "$GPU (device tool $3), commit $1 (session $2), the bf16 residual stream" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_seeds4_bf16_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_seeds4_bf16_provenance.json
cd $OUT && tar czf results.tgz r && rm -rf r
