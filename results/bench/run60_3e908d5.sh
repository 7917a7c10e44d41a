source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A8 $OUT/phase3a_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1; both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -4 > $OUT/pytest_cuda.txt ); cat $OUT/pytest_cuda.txt
timeout 230 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -16 $OUT/bench_train.txt
