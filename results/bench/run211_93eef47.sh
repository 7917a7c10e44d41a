# Session 46: β's sweep at the current default with two seeds, on one H200 per call: phase2_5 --seeds 2 and its
# low-LR extension, shard RANK of 2 (RANK/WORLD_SIZE set by hand, no rendezvous: sweep.shard_from_env), so that
# the two calls together are the whole two-seed sweep. The run folders come back (no checkpoints) and are
# merged and exported on the laptop.
# Usage: bash .dev/run211.sh COMMIT SESSION KIND RANK
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${4:?usage: run211.sh COMMIT SESSION KIND RANK}"
export RANK=$4 WORLD_SIZE=2 LOCAL_RANK=0
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
C1="python3 -m pyphase train phase2_5 --device cuda --seeds 2 --out /root/t25 --no-progress"
C2="python3 -m pyphase train phase2_5_lowlr --device cuda --seeds 2 --out /root/t25 --no-progress"
( /usr/bin/time -v timeout 400 $C1 ) > $OUT/r/phase2_5_time.txt 2>&1; grep -E "Elapsed|runs trained" $OUT/r/phase2_5_time.txt
( /usr/bin/time -v timeout 100 $C2 ) > $OUT/r/phase2_5_lowlr_time.txt 2>&1; grep -E "Elapsed|runs trained" $OUT/r/phase2_5_lowlr_time.txt
tar czf $OUT/r/runs.tgz --exclude '_packs' -C /root t25
du -sh /root/t25 $OUT/r/runs.tgz
cd $OUT && tar czf results.tgz r && rm -rf r
