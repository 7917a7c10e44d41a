# Session 44 on a host of four H200s: phase3a with four seeds (40 runs x 5,000 steps) through torchrun at the
# current code, to re-check the report's phase3a claims (LR_opt on the grid edge, divergence at high LR) with
# more seeds; seed 0 is compared with rerun96/97 afterwards.
# Usage: bash .dev/run202.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run202.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
C="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase train phase3a --device cuda --seeds 4 --out /root/t --no-progress"
echo "== $C"; ( /usr/bin/time -v timeout 300 $C ) > $OUT/r/phase3a_s4.txt 2>&1; echo rc=$?; grep -E "Elapsed" $OUT/r/phase3a_s4.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -m pyphase results export phase3a --runs /root/t --dest /tmp/e --corpus $PYPHASE_DATA --command "/usr/bin/time -v $C" --note "torchrun over $NG GPUs, one rank per GPU, of a host of $NG x $GPU (device tool $3), the first pyphase command on the host, commit $1 (session $2)" > /dev/null && cp /tmp/e/phase3a/summary.csv /tmp/e/phase3a/provenance.json $OUT/r/
ls -la /tmp/e/phase3a/ && ls -la /tmp/e/phase3a/steps.parquet | awk '{ if ($5 < 15000000) exit 0; else exit 1 }' && cp /tmp/e/phase3a/steps.parquet $OUT/r/
cd $OUT && tar czf results.tgz r && rm -rf r
