# Session 51: cold phase3a under the timeline wrapper as the machine's first pyphase command (its summary should
# equal rerun106's bit for bit: sweep.py now checks each pack's size before training), then part 1 of 2 of the whole test suite on a single H200 at the session's code (the suite no
# longer fits one 500 s call), with the device setup's PYPHASE_DATA and PYPHASE_GIT_COMMIT exported as in run227.
# Usage: bash .dev/run236.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run236.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
mkdir -p /tmp/ps
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 150 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed" $OUT/r/timeline_cold.txt
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
python3 -c "import torch, triton, polars; print(torch.__version__, triton.__version__, 'polars', polars.__version__)" | tee -a $OUT/r/gpu.txt
B="tests/test_sim.py tests/test_skip_dead.py tests/test_stream_grad.py tests/test_sweep.py tests/test_tokenizer.py tests/test_train.py tests/test_predict.py tests/test_cli_predict.py tests/test_results.py tests/test_cli_results.py tests/test_report.py tests/test_config.py tests/test_cli_train.py"
A=$(ls tests/test_*.py | grep -v -x -F -f <(echo $B | tr ' ' '\n'))
echo $A > $OUT/r/files_part1.txt
( timeout 400 python3 -m pytest -q -p no:cacheprovider $A -rfEx --durations=20 2>&1 | tail -80 ) > $OUT/r/pytest_part1.txt
grep -E "passed|failed|error" $OUT/r/pytest_part1.txt | tail -3
grep -E "^(FAILED|ERROR)" $OUT/r/pytest_part1.txt | head -30
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
