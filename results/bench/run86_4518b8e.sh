source .dev/setup.sh
BW="64,64,64,64,4,3;32,64,64,32,4,3;32,128,128,32,4,4"
FW="64,32,4,3;64,64,4,4;64,64,4,2"
V="eager,eager:attn0,eager:attn1,eager:attn2,eager:fwd0,eager:fwd1,eager:fwd2,eager,eager:attn0,eager:attn1"
for B in 256 128; do timeout 250 python3 benches/profile_step.py --k 5 --b $B --out /tmp/prof --attn-bwd "$BW" --attn-fwd "$FW" --variants $V 2>&1 | grep -E "^\{|rror" >> $OUT/steps.txt; done
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l.strip()[:300]); continue
    r=json.loads(l); print(r['B'], r['variant'], r['attn_fwd'], r['attn_bwd'], round(r['ms_per_step'],3), [round(x,4) for x in r['loss_step160']])
" | tee $OUT/steps_summary.txt
