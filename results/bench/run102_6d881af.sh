source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 280 python3 -m pytest -q -p no:cacheprovider tests/test_stream_grad.py tests/test_layernorm.py tests/test_mlp_block.py tests/test_train.py -k "cuda or precompiled" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
for b in 256 128; do timeout 140 python3 benches/profile_step.py --k 5 --b $b --out /tmp/prof$b --profile-all --variants eager,eager+PYPHASE_RESIDUAL=bf16grad,eager,eager+PYPHASE_RESIDUAL=bf16grad 2>&1 | grep -E "^\{|rror|by group" | cut -c1-900 > $OUT/steps_b$b.txt; cat $OUT/steps_b$b.txt; cp /tmp/prof$b/*.txt $OUT/ 2>/dev/null; done
