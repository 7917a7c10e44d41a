source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3a_timing.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (default numerics: fp32 residual stream and gradient); both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun25_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun25 (3e908d5) bit for bit:", all((j[c] == j[c + "_o"]).all() for c in cols))
print(a.select("wall_time_s", "setup_time_s", "numerics").head(1))
PY
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_stream_grad.py tests/test_train.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
