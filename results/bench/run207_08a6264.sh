# Session 45: launch configurations of the kernels that read the residual stream, retried with the bf16 stream
# (the default from c9530b1): the add + LayerNorm backward (layernorm.CONFIG["bwd"]) and the fused MLP-half
# forward (mlp_block.CONFIG), each in its own process, the K = 5, B = 256 step (ms, J, losses at step 160).
# Usage: bash .dev/run207.sh COMMIT SESSION KIND
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
: "${3:?usage: run207.sh COMMIT SESSION KIND}"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv | tee $OUT/r/gpu.txt
run() {  # $1 label, rest: profile_step options
  local label=$1; shift
  ( cd benches && timeout 90 python3 profile_step.py --k 5 --b 256 --variants eager --out /tmp/ps "$@" ) > /tmp/ps/out.txt 2>&1
  cat /tmp/ps/out.txt >> $OUT/r/sweep_raw.txt
  grep '^{"variant"' /tmp/ps/out.txt | python3 -c "
import sys, json
for r in map(json.loads, sys.stdin):
    print('$label', round(r['ms_per_step'], 3), 'ms', round(r.get('joules_per_step', 0), 3), 'J', round(r.get('watts', 0)), 'W', 'loss160', [round(v, 4) for v in r['loss_step160']], 'regs', r.get('regs_spills', {}).get('_add_ln_bwd_kernel'), r.get('block_regs_spills'))
" | tee -a $OUT/r/sweep.txt
}
run default
for c in 32,8,4 16,32,4 32,16,4 16,8,4 16,16,2 32,8,8 64,4,8; do run "ln_bwd=$c" --ln-config 64,8/$c; done
for c in 64,32,4,3,0/1,1,1 64,64,4,3,168/1,1,1 64,32,4,2,168/1,1,1 64,32,4,4,168/1,1,1 128,32,8,3,0/1,1,1; do run "block=$c" --block-config $c; done
run default
cd $OUT && tar czf results.tgz r && rm -rf r
