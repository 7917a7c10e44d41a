source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -15 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
timeout 250 python3 benches/bench_train.py --device cuda --steps 200 > $OUT/bench_train.txt 2>&1; tail -16 $OUT/bench_train.txt
