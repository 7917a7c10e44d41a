source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
( /usr/bin/time -f "wall %e s" python3 -X importtime -c "import pyphase.cli, pyphase.sweep, pyphase.train, torch; torch.cuda.init()" ) 2> $OUT/importtime_cold.txt
tail -1 $OUT/importtime_cold.txt; sort -t'|' -k2 -n -r $OUT/importtime_cold.txt | head -12
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_skip_dead.py tests/test_stream_grad.py tests/test_train.py -k "cuda or precompiled" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
timeout 300 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -24 $OUT/bench_train.txt
