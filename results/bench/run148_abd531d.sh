source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 300 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -24 $OUT/bench_train.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 250 python3 -m pytest -q -p no:cacheprovider tests/test_mlp.py tests/test_mlp_block.py tests/test_layernorm.py tests/test_linear.py tests/test_attention.py tests/test_kernels.py tests/test_forked_compile.py tests/test_cli_train.py tests/test_train.py -k "cuda or reciprocal or switch or launcher or fast_exit or forked or precompiled" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
