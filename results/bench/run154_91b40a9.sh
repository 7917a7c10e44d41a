source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# 128-row tiles (8 warps) for the MLP "dw" backward and the MLP-half forward, never tried at this code; one process each
M0="64,32,4,2/dw:64,32,4,3,4096"; B0="64,32,4,3,168/1,1,1"
run() { timeout 100 python3 benches/profile_step.py --k 5 --b 256 --variants eager --mlp-config "$1" --block-config "$2" --out /tmp/p > /tmp/one.txt 2>&1
  python3 - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("/tmp/one.txt") if l.startswith("{")]
if not rows:
    print(sys.argv[1], sys.argv[2], "FAILED:", open("/tmp/one.txt").read()[-600:].replace("\n", " | "))
for r in rows:
    rs = r.get("regs_spills", {})
    print(f'mlp {sys.argv[1]:28s} block {sys.argv[2]:22s} {r["ms_per_step"]:.3f} ms  loss160 {[round(x, 6) for x in r["loss_step160"]]}  dw {rs.get("_mlp_bwd_dw_kernel")} blk {r.get("block_regs_spills")}')
PY
}
{
run $M0 $B0
for m in 128,32,8,3,4096 128,32,8,2,4096 128,32,4,3,4096 128,16,8,3,4096 128,64,8,2,4096 64,32,8,3,4096; do run "64,32,4,2/dw:$m" $B0; done
for b in 128,32,8,3,0/1,1,1 128,32,8,2,0/1,1,1 128,64,8,2,0/1,1,1 128,32,8,3,0/1,1,0; do run $M0 $b; done
run $M0 $B0
} 2>&1 | tee $OUT/tile128_sweep_k5_b256.txt
