source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.Stream.priority_range())"
# 1. the bench, its own Triton cache
TRITON_CACHE_DIR=/tmp/tc_bench timeout 240 python3 benches/bench_pack_priority.py --k 5 --steps 100 --rounds 3 --json $OUT/bench_pack_priority.json 2>&1 | tail -12 | tee $OUT/bench_pack_priority.txt
BEST=$(python3 -c "
import json,os; d=json.load(open(os.environ['OUT']+'/bench_pack_priority.json')); b=d['best_ms']
print(min(('none','heavy','light'), key=lambda m: b[m]))")
echo "best mode: $BEST"
# 2. phase3a with the best mode, default (cold) Triton cache, warm OS caches
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( PYPHASE_PACK_PRIORITY=$BEST /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3a_timing.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "PYPHASE_PACK_PRIORITY=$BEST /usr/bin/time -v $CMD" --note "second command on a fresh H100 (device tool nvidia-h100-x1; after benches/bench_pack_priority.py with its own Triton cache: cold Triton cache, warm OS caches), commit $1, stream priority mode $BEST" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "final_val_loss", "diverged_step", "wall_time_s", "setup_time_s", "numerics"))
PY
# 3. CUDA tests of packs together (each priority mode) and of the trainer
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py -k "cuda or priority" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
