# Do a config's numbers depend on its pack's size? cuBLAS's batched products by batch count; the CUDA
# tests; a 300-step phase3a-like sweep at --max-pack 5/3/2/1 with the previous code (.dev/old) and
# with kernels.PARTIALS_PACK; phase3a on all GPUs of the host through torchrun against the one-GPU
# rerun88 (packs of 5); the step time of packs of 1 and 3 at B = 256, previous code against new.
# Usage: bash .dev/run194.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run194.sh COMMIT SESSION KIND}"
cp pyphase/_core*.so .dev/old/pyphase/
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
echo "== 1. cuBLAS"; timeout 60 python3 .dev/cublas_k.py 2>&1 | tee $OUT/r/cublas_k.txt | tail -8
echo "== 2. tests"; ( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_train.py -k "cuda" 2>&1 | tail -6 ) | tee $OUT/r/pytest_cuda_train.txt
echo "== 3. max-pack"
for tree in new old; do
  PP=$PWD; [ $tree = old ] && PP=$PWD/.dev/old
  for k in 5 3 2 1; do
    ( PYTHONPATH=$PP:/tmp/site timeout 100 python3 -m pyphase train .dev/kprobe.toml --device cuda --max-pack $k --out /root/kp_$tree/m$k --no-progress ) > $OUT/r/kp_${tree}_m$k.txt 2>&1
    echo "$tree max-pack $k rc=$? $(tail -1 $OUT/r/kp_${tree}_m$k.txt)"
  done
  for k in 3 2 1; do
    python3 .dev/cmp_runs.py /root/kp_$tree/m5/kprobe /root/kp_$tree/m$k/kprobe pack_size,packs_together > $OUT/r/kp_cmp_${tree}_m5_m$k.txt
    echo "-- $tree max-pack 5 vs $k: $(grep -c DIFFERS $OUT/r/kp_cmp_${tree}_m5_m$k.txt) columns differ; $(tail -1 $OUT/r/kp_cmp_${tree}_m5_m$k.txt)"
  done
done
python3 .dev/cmp_runs.py /root/kp_old/m5/kprobe /root/kp_new/m5/kprobe > $OUT/r/kp_cmp_old_new_m5.txt; echo "-- old vs new, max-pack 5: $(tail -1 $OUT/r/kp_cmp_old_new_m5.txt)"
echo "== 4. phase3a over $NG GPUs"
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
CMD="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a2 --no-progress"
( /usr/bin/time -v timeout 150 $CMD ) > $OUT/r/phase3a_x2.txt 2>&1; echo rc=$?; grep Elapsed $OUT/r/phase3a_x2.txt
kill $SMI; pkill -f 'nvidia-smi --query'
python3 -m pyphase results export phase3a --runs /root/t3a2 --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "host of $NG x $GPU (device tool $3), after other work in the same call, commit $1 (session $2); torchrun, one rank per GPU" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_x2_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_x2_provenance.json
python3 - <<'PY' | tee $OUT/r/phase3a_x2_vs_rerun88.txt
import os, polars as pl
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
a = pl.read_csv(os.environ["OUT"] + "/r/phase3a_x2_summary.csv", infer_schema_length=0)
b = pl.read_csv("results/phase3a/rerun88_seed0_summary.csv", infer_schema_length=0)
j = a.join(b, on=["batch_size", "lr"], suffix="_1gpu")
print("rows", j.height, "pack sizes here", sorted(set(j["pack_size"].to_list())), "in rerun88", sorted(set(j["pack_size_1gpu"].to_list())))
print("equal to rerun88 (one GPU, packs of 5) bit for bit:", {c: bool((j[c].fill_null("") == j[c + "_1gpu"].fill_null("")).all()) for c in cols})
PY
echo "== 5. step time, packs of 1 and 3 at B = 256"
for k in 1 3; do for tree in old new; do
  PP=$PWD; [ $tree = old ] && PP=$PWD/.dev/old
  ( cd benches && PYTHONPATH=$PP:/tmp/site timeout 60 python3 profile_step.py --k $k --b 256 --variants eager,eager --out /tmp/ps ) > $OUT/r/profile_k${k}_b256_$tree.txt 2>&1
  echo "K=$k $tree: $(grep '^{"variant"' $OUT/r/profile_k${k}_b256_$tree.txt | python3 -c "import sys, json; print([(round(r['ms_per_step'], 3), round(r.get('joules_per_step', 0), 3), r['loss_step160'][0]) for r in map(json.loads, sys.stdin)])")"
done; done
cd $OUT && tar czf results.tgz r && rm -rf r
