source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback|warn" -A12 $OUT/phase3a_timing.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 21, after the review: kernels.below)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
for b in 256; do
  V="eager+PYPHASE_MASKS=all+PYPHASE_GELU_RCP=div,eager+PYPHASE_MASKS=all,eager"
  timeout 150 python3 benches/profile_step.py --k 5 --b $b --variants $V --out $OUT > $OUT/profile_ab_b$b.txt 2>&1; grep '^{"variant"' $OUT/profile_ab_b$b.txt | cut -c1-200
done
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_mlp.py tests/test_mlp_block.py tests/test_layernorm.py tests/test_linear.py tests/test_attention.py -k "cuda or reciprocal or switch" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
