# Session 46: the trainer code of 85252b7 (93eef47 reverts ce1674e), on the warm H200 that ran run211: phase3a (warm:
# not the first pyphase command), bench_train (the three speeds and MFU), then phase3b seed 0.
# Usage: bash .dev/run212.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run212.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
CMD="python3 .dev/timeline.py $OUT/r/timeline_warm.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 150 $CMD ) > $OUT/r/timeline_warm.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_warm.txt; grep -E "Elapsed|File system inputs" $OUT/r/timeline_warm.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "after run211 (phase2_5 two shards) on the same $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
timeout 100 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/r/bench_train.json > $OUT/r/bench_train.txt 2>&1; tail -14 $OUT/r/bench_train.txt
LEFT=$((330 - SECONDS))
echo "seconds left for phase3b: $LEFT"
if [ $LEFT -gt 62 ]; then
  CMD3B="python3 -m pyphase train phase3b --device cuda --seeds 1 --out /root/t3b --no-progress"
  ( /usr/bin/time -v timeout $LEFT $CMD3B ) > $OUT/r/phase3b_time.txt 2>&1; grep -E "Elapsed" $OUT/r/phase3b_time.txt
  python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD3B" --note "$GPU (device tool $3), commit $1 (session $2), after phase3a and bench_train" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/r/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/r/phase3b_provenance.json
fi
