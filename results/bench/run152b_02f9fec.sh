source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 300 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -14 $OUT/bench_train.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
