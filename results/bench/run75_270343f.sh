source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv | tee $OUT/gpu.txt
V="eager,eager+PYPHASE_MAXNREG=dkdv:168,eager+PYPHASE_MAXNREG=dkdv:128,eager+PYPHASE_MAXNREG=attn_bwd_dq:128,eager+PYPHASE_MAXNREG=attn_fwd:80,eager+PYPHASE_MAXNREG=attn_fwd:96,eager"
for B in 256 128; do timeout 220 python3 benches/profile_step.py --k 5 --b $B --out /tmp/prof --variants $V 2>&1 | grep -E "^\{|Error|error" >> $OUT/steps.txt; done
timeout 150 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof2 --mlp-config "64,32,4,2/dw:64,32,4,2,4096" --variants "eager,eager+PYPHASE_MAXNREG=mlp_bwd_dw:168,eager+PYPHASE_MAXNREG=mlp_bwd_dw:128" 2>&1 | grep -E "^\{|Error|error" | sed 's/"variant": "/"variant": "dw2stage:/' >> $OUT/steps.txt
timeout 150 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof3 --block-config "64,64,4,2" --variants "eager,eager+PYPHASE_MAXNREG=mlp_block:168,eager+PYPHASE_MAXNREG=mlp_block:200" 2>&1 | grep -E "^\{|Error|error" | sed 's/"variant": "/"variant": "block2stage:/' >> $OUT/steps.txt
python3 -c "
import json
for l in open('$OUT/steps.txt'):
    if not l.startswith('{'): print(l.strip()); continue
    r=json.loads(l); print(r['B'], r['variant'], round(r['ms_per_step'],3), json.dumps(r.get('regs_spills')), [round(x,4) for x in r['loss_step160']])
" | tee $OUT/steps_summary.txt
