# The H100 check at unchanged code: the cold phase3a and bench_train as run186 did, then the CUDA tests
# (the tests CI cannot run). Usage: bash .dev/run189.sh COMMIT SESSION (run188 took the session from its text).
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${2:?usage: run189.sh COMMIT SESSION}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu
( nvidia-smi --query-gpu=$Q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$Q --format=csv -l 1 ) > $OUT/r/smi.csv 2>&1 &
SMI=$!
# 1. cold phase3a under the timeline wrapper (the first pyphase command on this machine)
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep Elapsed $OUT/r/timeline_cold.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session $2; pyphase/ as at 654790c; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/r/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
PY
kill $SMI; pkill -f 'nvidia-smi --query'; sleep 1
# 2. bench_train
timeout 200 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/r/bench_train.json > $OUT/r/bench_train.txt 2>&1; tail -14 $OUT/r/bench_train.txt
( timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_forked_compile.py tests/test_attention.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit or fill or longest or share" 2>&1 | tail -4 ) | tee $OUT/r/pytest_cuda.txt
cd $OUT && tar czf results.tgz r && rm -rf r
