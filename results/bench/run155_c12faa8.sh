source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
for B in 256 128; do
  timeout 200 python3 benches/profile_step.py --k 5 --b $B --profile-all --variants "eager,eager+BENCH_BLAS=cublaslt,eager,eager+BENCH_BLAS=cublaslt" --out /tmp > $OUT/blas_ab_k5_b$B.txt 2>&1
  grep -E '^\{' $OUT/blas_ab_k5_b$B.txt | python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
for r in rows:
    print(r['variant'], round(r['ms_per_step'], 3), 'ms', [round(x, 6) for x in r['loss_step160']], {k: round(v, 3) for k, v in r.get('profile_ms_per_step', {}).items() if k == 'matmul'})"
done
grep -E "nvjet|gemm|cutlass|sm90|Kernel" $OUT/blas_ab_k5_b256.txt | cut -c1-60,130-200 | head -30
