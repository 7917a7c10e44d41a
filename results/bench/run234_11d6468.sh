# Session 50: the tests run233 failed (polars 1.30.0: max() of an all-null column), after the fix, on a single H200.
# Usage: bash .dev/run234.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run234.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cli_results.py tests/test_results.py -rfEx --durations=10 2>&1 | tail -80 ) > $OUT/r/pytest_fixed.txt
grep -E "passed|failed|error" $OUT/r/pytest_fixed.txt | tail -3
grep -E "^(FAILED|ERROR|XFAIL)" $OUT/r/pytest_fixed.txt | head -30
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
