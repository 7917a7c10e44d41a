source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3a_timing.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1; both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun25_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun25 (3e908d5) bit for bit:", all((j[c] == j[c + "_o"]).all() for c in cols))
print(a.select("wall_time_s", "setup_time_s", "numerics").head(1))
PY
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -15 > $OUT/pytest_cuda.txt ); tail -3 $OUT/pytest_cuda.txt
P="python3 benches/profile_step.py --k 5 --out /tmp/prof"
for B in 256 128; do
  timeout 60 $P --b $B --variants eager_unfused,eager 2>&1 | grep -E "^\{"
  for C in 64,64,4,4 64,32,4,3 64,64,4,3/0,1 64,64,4,3/1,0 128,64,8,3; do
    timeout 45 $P --b $B --variants eager --block-config $C 2>&1 | grep -E "^\{|rror" | head -3
  done
  timeout 60 $P --b $B --variants eager_unfused,eager 2>&1 | grep -E "^\{"
done > $OUT/sweep.txt 2>&1
timeout 60 $P --b 256 --variants eager_bf16res_unfused,eager_bf16res 2>&1 | grep -E "^\{" >> $OUT/sweep.txt
python3 -c "
import json
for l in open('$OUT/sweep.txt'):
    if l.startswith('{'):
        r=json.loads(l); print(r['B'], r['variant'], r.get('block_config','-'), round(r['ms_per_step'],3), r.get('block_regs_spills'), r['loss_step160'][:2])
    else: print(l[:200])
"
