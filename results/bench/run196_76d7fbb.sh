# The pack-size independence of a config's bits, after kernels.PARTIALS_PACK (36302f3), the weight norm in that order too, the fixed-order
# loss mean and the lone model's weight gradients: the probe of K = 1's weight gradient, the CUDA
# tests, a 300-step phase3a-like sweep at --max-pack 5/3/2/1 (every column bit for bit), phase3a on one
# GPU then on all GPUs through torchrun (bit for bit), and the step time at K = 1 and 5, previous code
# (.dev/old, 0e7a190) against new.
# Usage: bash .dev/run196.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run196.sh COMMIT SESSION KIND}"
cp pyphase/_core*.so .dev/old/pyphase/
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt

echo "== 2. tests"; ( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_pack_independence.py tests/test_train.py tests/test_head.py -k "cuda or pack_independence" 2>&1 | tail -8 ) | tee $OUT/r/pytest_cuda.txt
echo "== 3. max-pack"
for k in 5 3 2 1; do
  ( timeout 100 python3 -m pyphase train .dev/kprobe.toml --device cuda --max-pack $k --out /root/kp/m$k --no-progress ) > $OUT/r/kp_m$k.txt 2>&1
  echo "max-pack $k rc=$? $(tail -1 $OUT/r/kp_m$k.txt)"
done
for k in 3 2 1; do
  python3 .dev/cmp_runs.py /root/kp/m5/kprobe /root/kp/m$k/kprobe pack_size,packs_together > $OUT/r/kp_cmp_m5_m$k.txt
  echo "-- max-pack 5 vs $k: $(tail -1 $OUT/r/kp_cmp_m5_m$k.txt)"
done
echo "== 4. phase3a, one GPU then $NG"
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
C1="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a1 --no-progress"
( /usr/bin/time -v timeout 150 $C1 ) > $OUT/r/phase3a_1gpu.txt 2>&1; echo rc=$?; grep Elapsed $OUT/r/phase3a_1gpu.txt
C2="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a2 --no-progress"
( /usr/bin/time -v timeout 150 $C2 ) > $OUT/r/phase3a_x2.txt 2>&1; echo rc=$?; grep Elapsed $OUT/r/phase3a_x2.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 .dev/cmp_runs.py /root/t3a1/phase3a /root/t3a2/phase3a pack_size,packs_together | tee $OUT/r/phase3a_1gpu_vs_x2.txt | tail -3
for o in 1 2; do
  C=$C1; [ $o = 2 ] && C=$C2
  python3 -m pyphase results export phase3a --runs /root/t3a$o --dest /tmp/exp$o --corpus $PYPHASE_DATA --command "/usr/bin/time -v $C" --note "$( [ $o = 1 ] && echo one GPU || echo torchrun over $NG GPUs, one rank per GPU) of a host of $NG x $GPU (device tool $3), after other work in the same call, commit $1 (session $2)" > /dev/null && cp /tmp/exp$o/phase3a/summary.csv $OUT/r/phase3a_${o}gpu_summary.csv && cp /tmp/exp$o/phase3a/provenance.json $OUT/r/phase3a_${o}gpu_provenance.json
done
python3 - <<'PY' | tee $OUT/r/phase3a_1gpu_vs_rerun88.txt
import os, polars as pl
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
a = pl.read_csv(os.environ["OUT"] + "/r/phase3a_1gpu_summary.csv", infer_schema_length=0)
b = pl.read_csv("results/phase3a/rerun88_seed0_summary.csv", infer_schema_length=0)
j = a.join(b, on=["batch_size", "lr"], suffix="_88")
print("one GPU (packs of 5) equal to rerun88 bit for bit:", {c: bool((j[c].fill_null("") == j[c + "_88"].fill_null("")).all()) for c in cols})
print("max |diff| final_val_loss", (j["final_val_loss"].cast(pl.Float64) - j["final_val_loss_88"].cast(pl.Float64)).abs().max())
PY
echo "== 5. step time"
for k in 5 1; do for tree in old new; do
  PP=$PWD; [ $tree = old ] && PP=$PWD/.dev/old
  ( cd benches && PYTHONPATH=$PP:/tmp/site timeout 60 python3 profile_step.py --k $k --b 256 --variants eager,eager --out /tmp/ps ) > $OUT/r/profile_k${k}_b256_$tree.txt 2>&1
  echo "K=$k $tree: $(grep '^{"variant"' $OUT/r/profile_k${k}_b256_$tree.txt | python3 -c "import sys, json; print([(round(r['ms_per_step'], 3), round(r.get('joules_per_step', 0), 3), r['loss_step160'][0]) for r in map(json.loads, sys.stdin)])")"
done; done
cd $OUT && tar czf results.tgz r && rm -rf r
