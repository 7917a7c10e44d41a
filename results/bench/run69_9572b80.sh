source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py -k cuda 2>&1 | tail -4 ) | tee $OUT/pytest_attn.txt
CF="32,128,4,3;64,64,4,3;32,64,4,3;64,128,8,3;32,128,8,3;16,128,4,3;64,64,4,2;128,64,8,3;64,128,4,3;32,256,8,3"
timeout 150 python3 benches/bench_attention.py --k 5 --b 256 --bwd-configs "$CF" --json $OUT/bench_attn.json 2>&1 | tee $OUT/bench_attn.txt
BEST=$(python3 -c "
import json; r=json.load(open('$OUT/bench_attn.json'))['rows']
one=[x for x in r if x['variant'].startswith('triton bwd') and x['variant'].count(',')==3]
b=min(one,key=lambda x:x['ms']); print(b['variant'].split('(')[1].rstrip(')').replace(' ',''))
")
echo "best one-pass: $BEST" | tee -a $OUT/bench_attn.txt
P="python3 benches/profile_step.py --k 5 --out /tmp/prof --attn-bwd 32,128,128,32,4,3;$BEST"
( timeout 120 $P --b 256 --variants eager:attn1,eager:attn0,eager:attn1,eager:attn0 --out $OUT/prof; timeout 80 $P --b 128 --variants eager:attn0,eager:attn1,eager:attn0,eager:attn1 ) 2>&1 | grep -E "^\{|Error|error" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l); continue
    r=json.loads(l); print(r['B'], r['variant'], r['attn_bwd'], round(r['ms_per_step'],3), r['loss_step160'])
"
