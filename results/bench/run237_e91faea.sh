# Session 51: part 2 of 2 of the whole test suite on a single H200 at the session's code (the suite no
# longer fits one 500 s call), with the device setup's PYPHASE_DATA and PYPHASE_GIT_COMMIT exported as in run227.
# Usage: bash .dev/run237.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run237.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton, polars; print(torch.__version__, triton.__version__, 'polars', polars.__version__)" | tee -a $OUT/r/gpu.txt
B="tests/test_sim.py tests/test_skip_dead.py tests/test_stream_grad.py tests/test_sweep.py tests/test_tokenizer.py tests/test_train.py tests/test_predict.py tests/test_cli_predict.py tests/test_results.py tests/test_cli_results.py tests/test_report.py tests/test_config.py tests/test_cli_train.py"
echo $B > $OUT/r/files_part2.txt
( timeout 540 python3 -m pytest -q -p no:cacheprovider $B -rfEx --durations=20 2>&1 | tail -80 ) > $OUT/r/pytest_part2.txt
grep -E "passed|failed|error" $OUT/r/pytest_part2.txt | tail -3
grep -E "^(FAILED|ERROR)" $OUT/r/pytest_part2.txt | head -30
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
