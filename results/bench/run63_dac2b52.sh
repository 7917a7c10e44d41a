source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
P="python3 benches/profile_step.py --k 5 --out /tmp/prof"
for B in 256 128; do
  timeout 60 $P --b $B --variants eager_unfused 2>&1 | grep -E "^\{"
  for C in 64,64,4,2 64,64,4,2/0,1,1 64,64,4,2/1,0,1 64,64,4,3 64,64,8,2 64,128,4,2 64,64,4,1; do
    timeout 45 $P --b $B --variants eager --block-config $C 2>&1 | grep -E "^\{|rror" | head -3
  done
  timeout 45 $P --b $B --variants eager_unfused 2>&1 | grep -E "^\{"
done > $OUT/sweep.txt 2>&1
python3 -c "
import json
for l in open('$OUT/sweep.txt'):
    if l.startswith('{'):
        r=json.loads(l); print(r['B'], r['variant'], r.get('block_config','-'), round(r['ms_per_step'],3), r.get('block_regs_spills'))
    else: print(l[:200])
"
