source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A8 $OUT/phase3a_timing.txt | head -30
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -4 > $OUT/pytest_cuda.txt ); cat $OUT/pytest_cuda.txt
CMD1="python3 -m pyphase train .dev/phase3a_s1.toml --device cuda --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 170 $CMD1 ) > $OUT/phase3a_s1_timing.txt 2>&1; grep -E "Elapsed" $OUT/phase3a_s1_timing.txt
CMD2="python3 -m pyphase train .dev/phase3a_s1.toml --device cuda --out /root/t3a_bf16 --no-progress"
( PYPHASE_RESIDUAL=bf16 /usr/bin/time -v timeout 160 $CMD2 ) > $OUT/phase3a_s1_bf16res_timing.txt 2>&1; grep -E "Elapsed" $OUT/phase3a_s1_bf16res_timing.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "seed 0: /usr/bin/time -v $CMD (first command on a fresh machine); seed 1: /usr/bin/time -v $CMD1 (.dev/phase3a_s1.toml = experiments/phase3a.toml with seeds = [1])" --note "H100 (device tool nvidia-h100-x1), commit $1; both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
PYPHASE_RESIDUAL=bf16 python3 -m pyphase results export phase3a --runs /root/t3a_bf16 --dest /tmp/expb --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16 /usr/bin/time -v $CMD2" --note "H100, commit $1, opt-in bf16 residual stream (warm Triton cache)" > /dev/null && cp /tmp/expb/phase3a/summary.csv $OUT/phase3a_bf16res_s1_summary.csv && cp /tmp/expb/phase3a/provenance.json $OUT/phase3a_bf16res_s1_provenance.json
python3 -c "
import polars as pl
for f in ('$OUT/phase3a_summary.csv', '$OUT/phase3a_bf16res_s1_summary.csv'):
    d = pl.read_csv(f); print(d.select('seed','batch_size','lr','final_val_loss','converged','wall_time_s','setup_time_s','numerics'))"
