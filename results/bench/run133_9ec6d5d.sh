source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 250 python3 -m pytest -q -p no:cacheprovider tests/test_forked_compile.py tests/test_kernels.py tests/test_train.py tests/test_sweep.py tests/test_packing.py -k "cuda or precompiled or forked" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
