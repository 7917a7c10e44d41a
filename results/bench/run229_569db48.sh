# Session 49: the test files changed after run228 (the second review's fixes), on a single H200 (polars 1.30.0) at the
# session's final code.
# Usage: bash .dev/run229.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run229.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_results.py tests/test_report.py tests/test_analysis.py tests/test_predict.py tests/test_plots.py tests/test_cli_results.py -rfEx 2>&1 | tail -40 ) > $OUT/r/pytest_changed.txt
grep -E "passed|failed|error" $OUT/r/pytest_changed.txt | tail -3
grep -E "^(FAILED|ERROR)" $OUT/r/pytest_changed.txt | head -20
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
