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
timeout 200 python3 benches/bench_train.py --device cuda --steps 200 > $OUT/bench_train.txt 2>&1; tail -16 $OUT/bench_train.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
timeout 100 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof --variants eager,eager+PYPHASE_LINEAR=torch,eager 2>&1 | grep -E "^\{|rror|by group" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l.strip()[:300]); continue
    r=json.loads(l); print(r['B'], r['variant'], round(r['ms_per_step'],3), [round(x,4) for x in r['loss_step160']])
" | tee $OUT/steps_summary.txt
CMD2="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a_bf16 --no-progress"
( PYPHASE_RESIDUAL=bf16 /usr/bin/time -v timeout 140 $CMD2 ) > $OUT/phase3a_bf16res_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_bf16res_timing.txt
python3 -m pyphase results export phase3a --runs /root/t3a_bf16 --dest /tmp/exp2 --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16 /usr/bin/time -v $CMD2" --note "H100 (device tool nvidia-h100-x1), commit $1, opt-in bf16 residual stream, after the cold fp32 run, bench_train.py, the CUDA tests and profile_step.py in the same call (warm Triton cache for the shared kernels)" > /dev/null && cp /tmp/exp2/phase3a/summary.csv $OUT/phase3a_bf16res_summary.csv
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_bf16res_summary.csv"); b = pl.read_csv("results/phase3a/rerun21_bf16res_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("bf16 stream summary equal to rerun21 bit for bit:", all((j[c] == j[c + "_o"]).all() for c in cols))
print(a.select("wall_time_s", "setup_time_s", "numerics").head(1))
PY
