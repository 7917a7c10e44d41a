# Session 45: β's sweep at the new default (the bf16 residual stream) on one H200: phase2_5 seed 0 and its
# low-LR extension's seed 0 (23 runs x 10,000 steps), exported for `pyphase report` and set against the seed-0
# runs of the committed report and of run201 (bf16grad, four H200s).
# Usage: bash .dev/run206.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run206.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
C1="python3 -m pyphase train phase2_5 --device cuda --seeds 1 --out /root/t25 --no-progress"
C2="python3 -m pyphase train phase2_5_lowlr --device cuda --seeds 1 --out /root/t25 --no-progress"
( /usr/bin/time -v timeout 420 $C1 ) > $OUT/r/phase2_5_time.txt 2>&1; grep -E "Elapsed|runs trained" $OUT/r/phase2_5_time.txt
( /usr/bin/time -v timeout 120 $C2 ) > $OUT/r/phase2_5_lowlr_time.txt 2>&1; grep -E "Elapsed|runs trained" $OUT/r/phase2_5_lowlr_time.txt
python3 -m pyphase results export phase2_5 --runs /root/t25 --dest $OUT/r/exp --corpus $PYPHASE_DATA --command "$C1" --command "$C2" --note "$GPU (device tool $3), commit $1 (session $2), the bf16 residual stream (default from c9530b1)" > /dev/null
ls -la $OUT/r/exp/phase2_5
cd $OUT && tar czf results.tgz r && rm -rf r
