# Session 46: the QKV GEMM with TMA descriptors at its own launch (CONFIG["fwd_tma"], one program an SM) against
# the pointer kernel, alternating in one process (K = 5, B = 256).
# Usage: bash .dev/run215.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
: "${3:?usage: run215.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
V=eager,eager+PYPHASE_LINEAR_TMA=1; V=$V,$V,$V
( cd benches && timeout 110 python3 profile_step.py --k 5 --b 256 --variants $V --out /tmp/ps ) > $OUT/r/profile_k5_b256.txt 2>&1
grep '^{"variant"' $OUT/r/profile_k5_b256.txt | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print(r['variant'], round(r['ms_per_step'], 3), 'ms', round(r.get('joules_per_step', 0), 3), 'J', round(r.get('watts', 0)), 'W', round(r.get('sm_mhz', 0)), 'MHz', 'loss160', [round(v, 4) for v in r['loss_step160']])
" | tee $OUT/r/summary.txt
grep -E "_linear_bias_kernel" $OUT/r/profile_k5_b256.txt | cut -c1-95,160-230 | tee -a $OUT/r/summary.txt
cd $OUT && tar czf results.tgz r && rm -rf r
