# Session 46: the QKV GEMM (linear._linear_bias_kernel) moving h, w and y by TMA descriptors (PYPHASE_LINEAR_TMA=1)
# against its pointer loads and stores: the CUDA bit tests, the K = 5, B = 256 step alternating, then TMA launches.
# Usage: bash .dev/run214.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
: "${3:?usage: run214.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
summ() {
  grep '^{"variant"' $2 | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print('$1', r['variant'], round(r['ms_per_step'], 3), 'ms', round(r.get('joules_per_step', 0), 3), 'J', round(r.get('watts', 0)), 'W', round(r.get('sm_mhz', 0)), 'MHz', 'loss160', [round(v, 4) for v in r['loss_step160']])
" | tee -a $OUT/r/summary.txt
  grep -E "_linear_bias_kernel" $2 | head -2 | cut -c1-95,160-230 | tee -a $OUT/r/summary.txt
}
( timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py -k cuda 2>&1 | tail -4 ) | tee $OUT/r/pytest_cuda.txt
V=eager,eager+PYPHASE_LINEAR_TMA=1; V=$V,$V
( cd benches && timeout 80 python3 profile_step.py --k 5 --b 256 --variants $V --out /tmp/ps ) > $OUT/r/profile_k5_b256.txt 2>&1
summ default $OUT/r/profile_k5_b256.txt
for cfg in 128,128,8,3,1 64,128,4,2,2 128,128,8,2,1 64,128,8,2,2; do
  [ $SECONDS -gt 300 ] && break
  ( cd benches && PYPHASE_LINEAR_TMA=1 timeout 40 python3 profile_step.py --k 5 --b 256 --variants eager --linear-config $cfg --out /tmp/ps ) > $OUT/r/profile_tma_$cfg.txt 2>&1
  summ "tma=$cfg" $OUT/r/profile_tma_$cfg.txt
done
cd $OUT && tar czf results.tgz r && rm -rf r
