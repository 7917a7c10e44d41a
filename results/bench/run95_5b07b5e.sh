source .dev/setup.sh
timeout 150 python3 .dev/dw3.py 2>&1 | tee $OUT/dw3.txt
S="default;64,32,4,3,168/1,1,1;default@168;64,32,4,3,168/1,1,1@168;default"
timeout 300 python3 .dev/blk_ab.py 256,128 "$S" 2>&1 | tee $OUT/attn_ab.txt | grep -v "^\s*$" | python3 -c "
import sys, json
for l in sys.stdin:
    if l.startswith('{'):
        r = json.loads(l); print(r['B'], r['spec'], r['ms'], r['regs'], r['spills'], r['dkdv_regs_spills'], [round(x, 4) for x in r['loss160']])
    else: print(l.rstrip()[:300])
"
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py -k "cuda" 2>&1 | tail -3 ) | tee $OUT/pytest_attention.txt
