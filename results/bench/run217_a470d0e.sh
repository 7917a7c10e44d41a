# Session 47: the final trainer code (TMA QKV GEMM by default, checkpoints' numerics revision) on a single H200: the
# whole test suite (every CUDA test, not run216's subset), then phase3b seed 0 (its summary should equal run212's
# bit for bit: the TMA form gives the same bits).
# Usage: bash .dev/run217.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run217.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
( timeout 330 python3 -m pytest -q -p no:cacheprovider tests -rfEsx --durations=15 2>&1 | tail -120 ) > $OUT/r/pytest_all.txt
grep -E "passed|failed|error" $OUT/r/pytest_all.txt | tail -3
grep -E "^(FAILED|ERROR)" $OUT/r/pytest_all.txt | head -20
LEFT=$((520 - SECONDS)); echo "seconds left for phase3b: $LEFT"
if [ $LEFT -gt 70 ]; then
  CMD3B="python3 -m pyphase train phase3b --device cuda --seeds 1 --out /root/t3b --no-progress"
  ( /usr/bin/time -v timeout $LEFT $CMD3B ) > $OUT/r/phase3b_time.txt 2>&1; grep -E "Elapsed" $OUT/r/phase3b_time.txt
  python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD3B" --note "$GPU (device tool $3), commit $1 (session $2), after the whole test suite" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/r/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/r/phase3b_provenance.json
fi
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
