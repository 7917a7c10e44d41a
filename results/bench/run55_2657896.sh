source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A8 $OUT/phase3a_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1; both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 -c "
import polars as pl; d = pl.read_csv('$OUT/phase3a_summary.csv'); print(d.select('batch_size','lr','final_val_loss','converged','wall_time_s','setup_time_s','numerics'))"
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -4 > $OUT/pytest_cuda.txt ); cat $OUT/pytest_cuda.txt
( timeout 100 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager_nocopy,eager_bf16res --out /tmp/prof; timeout 80 python3 benches/profile_step.py --k 5 --b 128 --variants eager,eager_nocopy,eager_bf16res --out /tmp/prof128 ) > /tmp/profile.txt 2>&1; grep -E "^\{|per-step|Error|error" /tmp/profile.txt | cut -c1-400 > $OUT/steps.txt; cat $OUT/steps.txt
CMD2="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a_bf16 --no-progress"
( PYPHASE_RESIDUAL=bf16 /usr/bin/time -v timeout 170 $CMD2 ) > $OUT/phase3a_bf16res_timing.txt 2>&1; grep -E "Elapsed" $OUT/phase3a_bf16res_timing.txt; grep -iE "error|Traceback" -A8 $OUT/phase3a_bf16res_timing.txt | head -20
python3 - <<'PY'
import polars as pl, glob, os
d = pl.concat([pl.read_parquet(f) for f in sorted(glob.glob("/root/t3a_bf16/phase3a/*/summary.parquet"))], how="diagonal_relaxed")
d.write_csv(os.environ["OUT"] + "/phase3a_bf16res_summary.csv")
print(d.select("batch_size", "lr", "final_val_loss", "converged", "wall_time_s", "setup_time_s", "numerics"))
PY
