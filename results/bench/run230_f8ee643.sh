# Session 49: the test files changed after run229 (the third walkthrough's fixes: config, train, analysis, report), on a
# single H200 (polars 1.30.0) at the session's final code.
# Usage: bash .dev/run230.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run230.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_config.py tests/test_train.py tests/test_analysis.py tests/test_report.py tests/test_sweep.py -rfEx 2>&1 | tail -40 ) > $OUT/r/pytest_changed.txt
grep -E "passed|failed|error" $OUT/r/pytest_changed.txt | tail -3
grep -E "^(FAILED|ERROR)" $OUT/r/pytest_changed.txt | head -20
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
