source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CF="32,64,128,32,4,3;64,64,128,32,4,3;16,64,128,32,4,3;16,128,128,32,4,3;64,128,128,32,4,3;32,128,128,32,4,2;32,128,64,32,4,3;32,128,128,16,4,3;32,128,128,64,4,3;32,128,128,32,4,3"
for r in 1 2; do timeout 150 python3 benches/bench_attention.py --k 5 --b 256 --iters 100 --bwd-configs "$CF" --json $OUT/bench_attn_$r.json 2>&1 | grep -E "triton bwd|default"; done | tee $OUT/bench_attn.txt
BEST=$(python3 -c "
import json
rows={}
for r in (1,2):
    for x in json.load(open('$OUT/bench_attn_%d.json'%r))['rows']:
        if x['variant'].startswith('triton bwd'): rows.setdefault(x['variant'],[]).append(x['ms'])
b=min(rows,key=lambda v:sum(rows[v]))
print(b.split('(')[1].rstrip(')').replace(' ',''))
")
echo "best: $BEST" | tee -a $OUT/bench_attn.txt
P="python3 benches/profile_step.py --k 5 --out /tmp/prof --attn-bwd 32,128,128,32,4,3;$BEST"
( timeout 120 $P --b 256 --variants eager:attn1,eager:attn0,eager:attn1,eager:attn0; timeout 80 $P --b 128 --variants eager:attn0,eager:attn1,eager:attn0,eager:attn1 ) 2>&1 | grep -E "^\{|Error|error" > $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l); continue
    r=json.loads(l); print(r['B'], r['variant'], r['attn_bwd'], round(r['ms_per_step'],3), r['loss_step160'])
"
