source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
timeout 120 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof --variants eager,eager+PYPHASE_MLP_BLOCK=off,eager_unfused,eager 2>&1 | grep -E "^\{" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    r=json.loads(l); print(r['B'], r['variant'], round(r['ms_per_step'],3), r.get('block_regs_spills'), [round(x,4) for x in r['loss_step160']])
" | tee $OUT/steps_summary.txt
