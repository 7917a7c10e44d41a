source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 330 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -24 $OUT/bench_train.txt
timeout 120 python3 benches/bench_working_copy.py --k 5 --batches 128 --steps 50 --rounds 2 2>&1 | tail -3 | tee $OUT/bench_working_copy_k5_b128.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 250 python3 -m pytest -q -p no:cacheprovider tests/test_packing.py tests/test_skip_dead.py tests/test_stream_grad.py tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
