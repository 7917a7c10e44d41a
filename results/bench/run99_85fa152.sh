source .dev/setup.sh
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
for B in 256 128; do timeout 100 python3 benches/profile_step.py --k 5 --b $B --out /tmp/prof --variants eager 2>&1 | grep -E "^\{|rror|by group" | cut -c1-700; done | tee $OUT/steps.txt
