# Session 51: the code of session 50's end (no trainer kernel changed since session 48; the data layer checks
# that both splits hold a window before training) on a fresh single H200: cold phase3a under the timeline wrapper
# (the first pyphase command on the machine; its summary should equal rerun105's bit for bit), the trainer's CUDA
# tests, bench_train (the issue's three speeds and MFU), then phase3b with its progress bars (should equal rerun_66625f2_h200's).
# Usage: bash .dev/run235.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run235.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 150 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed|File system inputs" $OUT/r/timeline_cold.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_stream_grad.py tests/test_layernorm.py tests/test_linear.py tests/test_mlp.py tests/test_head.py tests/test_mlp_block.py tests/test_pack_independence.py tests/test_skip_dead.py tests/test_train.py tests/test_attention.py tests/test_kernels.py -k "cuda or pack_independence or precompiled" 2>&1 | tail -6 ) | tee $OUT/r/pytest_cuda.txt
timeout 110 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/r/bench_train.json > $OUT/r/bench_train.txt 2>&1; tail -14 $OUT/r/bench_train.txt
CMD3B="python3 -m pyphase train phase3b --device cuda --seeds 1 --out /root/t3b"
( /usr/bin/time -v timeout 120 $CMD3B ) > $OUT/r/phase3b_time.txt 2>&1; grep -E "Elapsed|runs trained" $OUT/r/phase3b_time.txt
python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD3B" --note "fresh $GPU (device tool $3) after cold phase3a, CUDA tests and bench_train, commit $1 (session $2)" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/r/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/r/phase3b_provenance.json
kill $SMI; pkill -f 'nvidia-smi --query'
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
