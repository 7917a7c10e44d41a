source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -6 > $OUT/pytest_cuda.txt ); cat $OUT/pytest_cuda.txt
