source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__); from pyphase import kernels, mlp; print('interpreted', kernels.interpreted(), 'gelu_rcp', mlp.gelu_rcp())"
( timeout 400 python3 -m pytest -q -p no:cacheprovider tests/test_mlp.py tests/test_layernorm.py tests/test_mlp_block.py tests/test_train.py -k "cuda or reciprocal or switch" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
