# Session 50: the whole test suite on a single H200 at the session's code, with the device setup's PYPHASE_DATA
# and PYPHASE_GIT_COMMIT exported as in run227.
# Usage: bash .dev/run232.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run232.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 500 python3 -m pytest -q -p no:cacheprovider tests -rfEx --durations=20 2>&1 | tail -80 ) > $OUT/r/pytest_all.txt
grep -E "passed|failed|error" $OUT/r/pytest_all.txt | tail -3
grep -E "^(FAILED|ERROR|XFAIL)" $OUT/r/pytest_all.txt | head -30
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
