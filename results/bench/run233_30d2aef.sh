# Session 50: the test files run232 did not reach before its 500 s limit (the suite has grown past it), and
# the files whose tests changed after run232's commit, on a single H200, PYPHASE_DATA and PYPHASE_GIT_COMMIT as in run227.
# Usage: bash .dev/run233.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run233.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 540 python3 -m pytest -q -p no:cacheprovider tests/test_sim.py tests/test_skip_dead.py tests/test_stream_grad.py tests/test_sweep.py tests/test_tokenizer.py tests/test_train.py tests/test_predict.py tests/test_cli_predict.py tests/test_results.py tests/test_cli_results.py tests/test_report.py tests/test_config.py tests/test_cli_train.py -rfEx --durations=10 2>&1 | tail -80 ) > $OUT/r/pytest_rest.txt
grep -E "passed|failed|error" $OUT/r/pytest_rest.txt | tail -3
grep -E "^(FAILED|ERROR|XFAIL)" $OUT/r/pytest_rest.txt | head -30
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
