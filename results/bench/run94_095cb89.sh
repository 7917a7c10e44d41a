source .dev/setup.sh
S="default;64,32,4,3,168/1,1,1;64,32,4,3/1,1,1;64,64,4,3/1,1,1;64,32,4,2,168/1,1,1;128,64,8,2/1,1,1;128,32,8,3/1,1,1;64,32,4,3,168/1,1,1;default"
timeout 330 python3 .dev/blk_ab.py 256,128 "$S" 2>&1 | tee $OUT/blk_ab.txt | grep -v "^\s*$" | python3 -c "
import sys, json
for l in sys.stdin:
    if l.startswith('{'):
        r = json.loads(l); print(r['B'], r['spec'], r['ms'], r['regs'], r['spills'], [round(x, 4) for x in r['loss160']])
    else: print(l.rstrip()[:300])
"
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py -k "cuda" 2>&1 | tail -4 ) | tee $OUT/pytest_mlp_block.txt
