# Session 45: weight gradients of the QKV and output projections as a Triton kernel (linear.weight_grad) against
# cuBLAS (PYPHASE_WGRAD=cublas): CUDA tests, then the K = 5 and K = 1 steps at B = 256, alternating.
# Usage: bash .dev/run208.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
: "${3:?usage: run208.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_pack_independence.py tests/test_kernels.py tests/test_train.py -k "cuda or pack_independence or precompiled" 2>&1 | tail -5 ) | tee $OUT/r/pytest_cuda.txt
for k in 5 1; do
  V=eager,eager+PYPHASE_WGRAD=cublas; [ $k = 5 ] && V=$V,$V
  ( cd benches && timeout 100 python3 profile_step.py --k $k --b 256 --variants $V --out /tmp/ps ) > $OUT/r/profile_k${k}_b256.txt 2>&1
  grep '^{"variant"' $OUT/r/profile_k${k}_b256.txt | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print('K=$k', r['variant'], round(r['ms_per_step'], 3), 'ms', round(r.get('joules_per_step', 0), 3), 'J', round(r.get('watts', 0)), 'W', 'MFU', round(100 * r['mfu'], 1), 'loss160', [round(v, 4) for v in r['loss_step160']])
"
  grep "per-step kernel ms" $OUT/r/profile_k${k}_b256.txt
done
cd $OUT && tar czf results.tgz r && rm -rf r
