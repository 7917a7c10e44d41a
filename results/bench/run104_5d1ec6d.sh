source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_stream_grad.py tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
PYPHASE_RESIDUAL=bf16grad timeout 250 python3 benches/bench_train.py --device cuda --steps 200 > $OUT/bench_train_bf16grad.txt 2>&1; tail -22 $OUT/bench_train_bf16grad.txt
