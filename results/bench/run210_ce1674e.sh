# Session 46: h's gradient in the MLP half (dpre @ w1^T) computed inside the first add + LayerNorm's backward
# kernel (layernorm._dot_ln_bwd_kernel) against cuBLAS then the add + LayerNorm backward (PYPHASE_MLP_DH=cublas):
# CUDA tests, the K = 5 step at B = 256 and 128 alternating, then other launches of the new kernel.
# Usage: bash .dev/run210.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
: "${3:?usage: run210.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
summ() {  # $1 label, $2 file
  grep '^{"variant"' $2 | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print('$1', r['variant'], round(r['ms_per_step'], 3), 'ms', round(r.get('joules_per_step', 0), 3), 'J', round(r.get('watts', 0)), 'W', 'MFU', round(100 * r['mfu'], 1), 'loss160', [round(v, 4) for v in r['loss_step160']], r.get('regs_spills', {}).get('_dot_ln_bwd_kernel'))
"
  grep "per-step kernel ms" $2
}
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_layernorm.py tests/test_mlp_block.py tests/test_skip_dead.py tests/test_pack_independence.py tests/test_train.py -k "cuda or pack_independence or alone_and" 2>&1 | tail -8 ) | tee $OUT/r/pytest_cuda.txt
for b in 256 128; do
  V=eager,eager+PYPHASE_MLP_DH=cublas; V=$V,$V
  ( cd benches && timeout 110 python3 profile_step.py --k 5 --b $b --variants $V --out /tmp/ps ) > $OUT/r/profile_k5_b${b}.txt 2>&1
  summ "B=$b" $OUT/r/profile_k5_b${b}.txt
done
for cfg in 32,64,8,8,3 64,128,4,8,2 128,64,2,8,3 64,32,4,8,3 32,128,8,8,2; do
  ( cd benches && timeout 60 python3 profile_step.py --k 5 --b 256 --variants eager --dot-config $cfg --out /tmp/ps ) > $OUT/r/profile_dot_${cfg}.txt 2>&1
  summ "dot=$cfg" $OUT/r/profile_dot_${cfg}.txt
done
cd $OUT && tar czf results.tgz r && rm -rf r
