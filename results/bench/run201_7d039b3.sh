# Session 44 on a host of four H200s: phase2_5 with two seeds and its low-LR extension (the 46 runs the
# report's beta fit uses) through torchrun at the current code, to re-check beta; seed 0 is compared with
# run200's phase2_5 (other packs) afterwards.
# Usage: bash .dev/run201.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run201.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
TR="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase"
C1="$TR train phase2_5 --device cuda --seeds 2 --out /root/t --no-progress"
C2="$TR train phase2_5_lowlr --device cuda --out /root/t --no-progress"
echo "== $C1"; ( /usr/bin/time -v timeout 280 $C1 ) > $OUT/r/phase2_5_s2.txt 2>&1; echo rc=$?; grep -E "Elapsed" $OUT/r/phase2_5_s2.txt
echo "== $C2"; ( /usr/bin/time -v timeout 150 $C2 ) > $OUT/r/phase2_5_lowlr.txt 2>&1; echo rc=$?; grep -E "Elapsed" $OUT/r/phase2_5_lowlr.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -m pyphase results export phase2_5 --runs /root/t --dest /tmp/e --corpus $PYPHASE_DATA --command "/usr/bin/time -v $C1; /usr/bin/time -v $C2" --note "torchrun over $NG GPUs, one rank per GPU, of a host of $NG x $GPU (device tool $3), the first pyphase commands on the host, commit $1 (session $2)" > /dev/null && cp /tmp/e/phase2_5/summary.csv /tmp/e/phase2_5/provenance.json $OUT/r/
ls -la /tmp/e/phase2_5/
cd $OUT && tar czf results.tgz r && rm -rf r
