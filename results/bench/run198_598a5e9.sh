# Session 44 on a host of two H200s: 1. the CUDA pack-independence tests (now also with PYPHASE_LINEAR=torch),
# 2. phase3a through torchrun uninterrupted, 3. the same killed by SIGKILL of torchrun alone (its workers
# must stop by themselves: sweep.stop_with_launcher) then run again (resumed), compared with 2. bit for bit,
# 4. phase3b --seeds 1 (packs of 4) and --seeds 3 (packs of 12), one GPU each: seed 0 equal bit for bit.
# Usage: bash .dev/run198.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run198.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
echo "== 1. tests"; ( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_pack_independence.py tests/test_train.py -k "cuda or pack_independence" 2>&1 | tail -6 ) | tee $OUT/r/pytest_cuda.txt
TR="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase"
C2="$TR train phase3a --device cuda --seeds 1 --out /root/t3a2 --no-progress"
echo "== 2. $C2"; ( /usr/bin/time -v timeout 120 $C2 ) > $OUT/r/phase3a_x2.txt 2>&1; echo rc=$?; grep Elapsed $OUT/r/phase3a_x2.txt
KCMD="$TR train phase3a --device cuda --seeds 1 --out /root/t3ak --no-progress"
echo "== 3. kill torchrun alone"; setsid $KCMD > $OUT/r/phase3a_x2_killed.txt 2>&1 &
P=$!; sleep ${KILL_AT:-30}
ps -o pid,ppid,sid,cmd --ppid $P | tee $OUT/r/kill_ps_before.txt
ls -la --time-style=+%T /root/t3ak/phase3a/_packs/ 2>&1 | tee -a $OUT/r/kill_ps_before.txt
date +%s.%N > $OUT/r/kill_times.txt; kill -KILL $P
for i in $(seq 1 20); do sleep 1; n=$(pgrep -fc "pyphase train phase3a --device cuda --seeds 1 --out /root/t3ak"); echo "$i s after: $n processes; $(nvidia-smi --query-compute-apps=pid --format=csv,noheader | wc -l) on GPUs" >> $OUT/r/kill_times.txt; [ "$n" = 0 ] && break; done
cat $OUT/r/kill_times.txt; tail -5 $OUT/r/phase3a_x2_killed.txt
python3 - <<'PY' | tee -a $OUT/r/kill_times.txt
import glob, torch
for f in sorted(glob.glob("/root/t3ak/phase3a/_packs/*.ckpt")):
    b = torch.load(f, map_location="cpu", weights_only=False)
    print(f.split("/")[-1], b["run_ids"], "evals", len(b["evals"]), "wall", round(b["wall"], 2))
PY
echo "== 3b. again"; ( /usr/bin/time -v timeout 120 $KCMD ) > $OUT/r/phase3a_x2_resumed.txt 2>&1; echo rc=$?; grep Elapsed $OUT/r/phase3a_x2_resumed.txt; grep -iE "resum|skipp" $OUT/r/phase3a_x2_resumed.txt | head
python3 .dev/cmp_runs.py /root/t3a2/phase3a /root/t3ak/phase3a | tee $OUT/r/phase3a_kill_resume_cmp.txt | tail -3
# phase3b on one GPU each, at the same time: --seeds 3 (packs of 12) on GPU 0, --seeds 1 (packs of 4) on GPU 1
PIDS=""
for s in 3 1; do
  C="python3 -m pyphase train phase3b --device cuda --seeds $s --out /root/t3b$s --no-progress"
  echo "== 4. CUDA_VISIBLE_DEVICES=$(( s == 3 ? 0 : 1 )) $C"
  ( CUDA_VISIBLE_DEVICES=$(( s == 3 ? 0 : 1 )) /usr/bin/time -v timeout 210 $C ) > $OUT/r/phase3b_s$s.txt 2>&1 &
  PIDS="$PIDS $!"
done
wait $PIDS
for s in 1 3; do
  C="python3 -m pyphase train phase3b --device cuda --seeds $s --out /root/t3b$s --no-progress"
  grep Elapsed $OUT/r/phase3b_s$s.txt
  python3 -m pyphase results export phase3b --runs /root/t3b$s --dest /tmp/e3b$s --corpus $PYPHASE_DATA --command "CUDA_VISIBLE_DEVICES=$(( s == 3 ? 0 : 1 )) /usr/bin/time -v $C" --note "one GPU of a host of $NG x $GPU (device tool $3), beside phase3b --seeds $(( s == 3 ? 1 : 3 )) on the other, after other work in the same call, commit $1 (session $2)" > /dev/null && cp /tmp/e3b$s/phase3b/summary.csv $OUT/r/phase3b_s${s}_summary.csv && cp /tmp/e3b$s/phase3b/provenance.json $OUT/r/phase3b_s${s}_provenance.json
done
kill $SMI; pkill -f 'nvidia-smi --query'
mkdir -p /tmp/s0; for d in /root/t3b3/phase3b/*_s0; do ln -s $d /tmp/s0/; done
python3 .dev/cmp_runs.py /root/t3b1/phase3b /tmp/s0 pack_size,packs_together | tee $OUT/r/phase3b_k4_vs_k12_cmp.txt | tail -3
python3 -m pyphase results export phase3a --runs /root/t3a2 --dest /tmp/e3a --corpus $PYPHASE_DATA --command "/usr/bin/time -v $C2" --note "torchrun over $NG GPUs of a host of $NG x $GPU (device tool $3), after the tests, commit $1 (session $2)" > /dev/null && cp /tmp/e3a/phase3a/summary.csv $OUT/r/phase3a_x2_summary.csv
cd $OUT && tar czf results.tgz r && rm -rf r
