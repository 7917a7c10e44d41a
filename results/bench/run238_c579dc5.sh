# Session 51: the session's final trainer path (numpy imported before torch in run_experiment; the pack-size
# check) on a fresh H200: cold phase3a under the timeline wrapper as the first pyphase command (its summary
# should equal rerun107's bit for bit), then the CLI's and cold start's tests (the CUDA train among them).
# Usage: bash .dev/run238.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run238.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 150 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed" $OUT/r/timeline_cold.txt
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
python3 -c "import torch, triton, polars; print(torch.__version__, triton.__version__, 'polars', polars.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cli_train.py tests/test_coldstart.py -rfEx 2>&1 | tail -30 ) > $OUT/r/pytest_cli.txt
grep -E "passed|failed|error" $OUT/r/pytest_cli.txt | tail -2
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
