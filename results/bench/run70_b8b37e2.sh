source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
python3 -c "import triton; print('triton', triton.__version__)" | tee $OUT/versions.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
for m in on off on off; do echo "== PYPHASE_ATTENTION_TMA=$m"; PYPHASE_ATTENTION_TMA=$m timeout 60 python3 benches/bench_attention.py --k 5 --b 256 --iters 100 2>&1 | grep -E "triton|stock \(c" ; done | tee $OUT/bench_attn.txt
P="python3 benches/profile_step.py --k 5 --out /tmp/prof"
( timeout 120 $P --b 256 --variants eager,eager+PYPHASE_ATTENTION_TMA=off,eager,eager+PYPHASE_ATTENTION_TMA=off --out $OUT/prof; timeout 80 $P --b 128 --variants eager+PYPHASE_ATTENTION_TMA=off,eager,eager+PYPHASE_ATTENTION_TMA=off,eager ) 2>&1 | grep -E "^\{|Error|error" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l); continue
    r=json.loads(l); print(r['B'], r['variant'], round(r['ms_per_step'],3), r['loss_step160'])
"
