# Sweeps spread over the GPUs of one host through torchrun (device tool kind nvidia-h200-x2):
# 1. cold phase3a on both GPUs, 2. the same command again (every run finished: all skipped),
# 3. phase3a killed with SIGKILL midway (the whole process group) and run again: resumed from the
# packs' checkpoints, compared with 1. bit for bit, 4. phase2_5 (20 configs x 10,000 steps) on both GPUs.
# Usage: bash .dev/run193.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run193.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
nvidia-smi topo -m > $OUT/r/topo.txt 2>&1; nproc >> $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
TR="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase"
# 1. cold phase3a, the first pyphase command on this machine
CMD="$TR train phase3a --device cuda --seeds 1 --out /root/t3a2 --no-progress"
echo "== 1. $CMD"; date +%s.%N
( /usr/bin/time -v timeout 240 $CMD ) > $OUT/r/phase3a_x2_cold.txt 2>&1; echo rc=$?
grep -E "Elapsed|Maximum resident" $OUT/r/phase3a_x2_cold.txt; tail -16 $OUT/r/phase3a_x2_cold.txt | head -13
python3 -m pyphase results export phase3a --runs /root/t3a2 --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh host of $NG x $GPU (device tool $3), commit $1 (session $2); torchrun, one rank per GPU" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_x2_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_x2_provenance.json
# 2. the same command again: nothing left to train
echo "== 2. again"; ( /usr/bin/time -v timeout 120 $CMD ) > $OUT/r/phase3a_x2_again.txt 2>&1; echo rc=$?
grep -E "Elapsed" $OUT/r/phase3a_x2_again.txt; grep -ciE "skipp" $OUT/r/phase3a_x2_again.txt; tail -14 $OUT/r/phase3a_x2_again.txt | head -12
# 3. killed midway with SIGKILL (every process of the group), then run again
KCMD="$TR train phase3a --device cuda --seeds 1 --out /root/t3a2k --no-progress"
echo "== 3. kill"; setsid $KCMD > $OUT/r/phase3a_x2_killed.txt 2>&1 &
P=$!; sleep ${KILL_AT:-32}
ls -la --time-style=+%T /root/t3a2k/phase3a/_packs/ 2>&1; ls /root/t3a2k/phase3a/*/summary.parquet 2>/dev/null | wc -l
kill -KILL -- -$P; sleep 3; nvidia-smi --query-compute-apps=pid,used_memory --format=csv
python3 - <<'PY'
import glob, torch
for f in sorted(glob.glob("/root/t3a2k/phase3a/_packs/*.ckpt")):
    b = torch.load(f, map_location="cpu", weights_only=False)
    print(f.split("/")[-1], b["run_ids"], "evals", len(b["evals"]), "wall", round(b["wall"], 2))
PY
echo "== 3b. resumed"; ( /usr/bin/time -v timeout 240 $KCMD ) > $OUT/r/phase3a_x2_resumed.txt 2>&1; echo rc=$?
grep -E "Elapsed" $OUT/r/phase3a_x2_resumed.txt; tail -14 $OUT/r/phase3a_x2_resumed.txt | head -12
python3 .dev/cmp_runs.py /root/t3a2/phase3a /root/t3a2k/phase3a | tee $OUT/r/phase3a_x2_kill_resume_cmp.txt
ls /root/t3a2k/phase3a/
# 4. phase2_5 on both GPUs (its B = 32 and 64 kernels not yet compiled on this machine)
CMD25="$TR train phase2_5 --device cuda --seeds 1 --out /root/t25 --no-progress"
echo "== 4. $CMD25"; ( /usr/bin/time -v timeout 300 $CMD25 ) > $OUT/r/phase2_5_x2.txt 2>&1; echo rc=$?
grep -E "Elapsed" $OUT/r/phase2_5_x2.txt; tail -26 $OUT/r/phase2_5_x2.txt | head -23
python3 -m pyphase results export phase2_5 --runs /root/t25 --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD25" --note "host of $NG x $GPU (device tool $3) after phase3a in the same call, commit $1 (session $2); torchrun, one rank per GPU" > /dev/null && cp /tmp/exp/phase2_5/summary.csv $OUT/r/phase2_5_x2_summary.csv && cp /tmp/exp/phase2_5/provenance.json $OUT/r/phase2_5_x2_provenance.json
kill $SMI; pkill -f 'nvidia-smi --query'
cd $OUT && tar czf results.tgz r && rm -rf r
