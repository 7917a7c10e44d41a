source .dev/setup.sh
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 280 python3 -m pytest -q -p no:cacheprovider tests/test_packing.py tests/test_kernels.py tests/test_train.py tests/test_skip_dead.py -k "cuda or precompiled or interpreter or rounding" 2>&1 | tail -5 ) | tee $OUT/pytest_cuda.txt
