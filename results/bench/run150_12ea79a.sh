source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
( timeout 300 python3 .dev/side_ab.py 200 2>&1 ) | tee $OUT/side_ab.txt | grep -v "^$" | tail -30
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 230 python3 -m pytest -q -p no:cacheprovider tests/test_side.py tests/test_linear.py tests/test_train.py -k "cuda" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
