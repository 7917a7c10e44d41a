source .dev/setup.sh
S="default;default@80,0,168;default@0,128,168;default@80,128,168;default@0,0,0;default"
timeout 300 python3 .dev/blk_ab.py 256,128 "$S" 2>&1 | tee $OUT/attn_caps_ab.txt | grep -v "^\s*$" | python3 -c "
import sys, json
for l in sys.stdin:
    if l.startswith('{'):
        r = json.loads(l); print(r['B'], r['spec'], r['ms'], r['dkdv_regs_spills'], [round(x, 4) for x in r['loss160']])
    else: print(l.rstrip()[:300])
"
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_train.py -k "cuda" 2>&1 | tail -3 ) | tee $OUT/pytest_attention.txt
