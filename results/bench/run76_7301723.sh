# cold import timings first (fresh machine), then CUDA tests and profile_step's register report at HEAD
T=$(python3 -c "import torch,os;print(os.path.dirname(torch.__file__))" 2>/dev/null); echo "torch dir $T; __pycache__ files under torch: $(find $T -name '*.pyc' 2>/dev/null | head -2000 | wc -l) (first 2000 counted); site-packages writable: $(test -w $T && echo yes || echo no)" | tee $OUT/imports.txt
for i in 1 2; do python3 -c "import time; t=time.perf_counter(); import torch; a=time.perf_counter(); torch.zeros(1, device='cuda'); b=time.perf_counter(); import triton; c=time.perf_counter(); print('import torch %.2f s, CUDA init %.2f s, import triton %.2f s' % (a-t, b-a, c-b))" | tee -a $OUT/imports.txt; done
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
python3 -X importtime -c "import pyphase.train" 2> /tmp/imp.txt; sort -t'|' -k2 -n /tmp/imp.txt | tail -12 >> $OUT/imports.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
timeout 120 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof --variants eager,eager_unfused 2>&1 | grep -E "^\{|rror" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l.strip()); continue
    r=json.loads(l); print(r['B'], r['variant'], round(r['ms_per_step'],3), json.dumps(r.get('regs_spills')), [round(x,4) for x in r['loss_step160']])
" | tee $OUT/steps_summary.txt
