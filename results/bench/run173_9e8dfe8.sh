source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# clocks, power and temperature once a second while the cold run and the bench run
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu
( nvidia-smi --query-gpu=$Q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$Q --format=csv -l 1 ) > $OUT/smi.csv 2>&1 &
SMI=$!
# 1. cold phase3a under the timeline wrapper (the first pyphase command on this machine; an empty pyphase bytecode cache)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import|coldstart|load_corpus|_lockstep|compile_all|fast exit)" $OUT/timeline_cold.txt; grep Elapsed $OUT/timeline_cold.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 26 final code: pyphase/ as at 654790c; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
PY
# 2. bench_train
timeout 280 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -14 $OUT/bench_train.txt
kill $SMI; pkill -f 'nvidia-smi --query' ; sleep 1
python3 - <<'PY'
import os
rows = [l.split(', ') for l in open(os.environ['OUT'] + '/smi.csv') if l[:4].isdigit()]
sm = sorted(int(r[1].split()[0]) for r in rows); pw = sorted(float(r[3].split()[0]) for r in rows if r[3][0].isdigit())
print('smi samples', len(rows), 'SM MHz min/median/max', sm[0], sm[len(sm)//2], sm[-1], 'power W median/max', pw[len(pw)//2], pw[-1])
PY
# 3. CUDA tests
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_forked_compile.py tests/test_attention.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit or fill or longest or share" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
