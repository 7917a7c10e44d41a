source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
CMD="train phase3a --device cuda --seeds 1 --no-progress"
( /usr/bin/time -v timeout 200 python3 .dev/timeline.py $OUT/tl_cold.json $CMD --out /root/t3a ) > $OUT/phase3a_cold_timeline.txt 2>&1
grep -E "Elapsed|timeline" $OUT/phase3a_cold_timeline.txt | grep -v "write_run"; grep -iE "error|Traceback|warn" -A12 $OUT/phase3a_cold_timeline.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v python3 .dev/timeline.py OUT.json $CMD --out /root/t3a" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (kernels compiled in forked processes), run under .dev/timeline.py (results/bench/timeline_b6ab03b.py)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
TOML=results/bench/phase3a_short_a4e0fdb.toml
for i in 0 1 2; do
  for v in 1 0; do
    export PYPHASE_COMPILE_PROCS=$v TRITON_CACHE_DIR=/tmp/tc_${v}_$i
    /usr/bin/time -f "procs=$v round $i wall %e s" timeout 120 python3 -m pyphase train $TOML --device cuda --seeds 1 --out /root/s_${v}_$i --no-progress > /tmp/log_${v}_$i.txt 2>&1
    tail -1 /tmp/log_${v}_$i.txt; grep -iE "Traceback|Error|warn" -A5 /tmp/log_${v}_$i.txt | head -12
    python3 -c "
import polars as pl, glob
fs = sorted(glob.glob('/root/s_${v}_$i/phase3a_short/*/summary.parquet'))
d = pl.concat([pl.read_parquet(f) for f in fs])
print('procs=$v round $i', 'runs', len(fs), 'setup_s', sorted(set(round(x, 3) for x in d['setup_time_s'].to_list())), 'wall_s', round(d['wall_time_s'][0], 2), 'val', [round(x, 6) for x in d['final_val_loss'].to_list()])"
  done
done 2>&1 | tee $OUT/setup_ab.txt
unset PYPHASE_COMPILE_PROCS
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_forked_compile.py tests/test_packing.py tests/test_skip_dead.py tests/test_stream_grad.py tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled or forked" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
