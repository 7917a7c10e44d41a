source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# attention launches that keep the bias gradient's blocks (dk/dv key block 128, dq query block 128) and the
# forward's key block (64): only the query step of the dk/dv pass, the key step of the dq pass, warps, stages,
# and the forward's query block change
BWD="32,128,128,32,4,3;64,128,128,32,4,3;16,128,128,32,4,3;32,128,128,64,4,3;32,128,128,16,4,3;32,128,128,32,8,3;64,128,128,64,8,3;32,128,128,32,4,2;32,128,128,32,4,4"
FWD="32,64,4,3;128,64,4,3;128,64,8,3;64,64,8,3;64,64,4,2"
V="eager,eager:attn1,eager:attn2,eager:attn3,eager:attn4,eager:attn5,eager:attn6,eager:attn7,eager:attn8,eager:fwd0,eager:fwd1,eager:fwd2,eager:fwd3,eager:fwd4,eager"
for B in 256 128; do
  timeout 270 python3 benches/profile_step.py --k 5 --b $B --variants $V --attn-bwd "$BWD" --attn-fwd "$FWD" --out /tmp/p$B > $OUT/attn_keepbits_sweep_b$B.txt 2>&1
  python3 - $OUT/attn_keepbits_sweep_b$B.txt <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ref = rows[0]["loss_step160"]
for r in rows:
    print(f'{r["variant"]:14s} fwd {r["attn_fwd"]} bwd {r["attn_bwd"]} {r["ms_per_step"]:.3f} ms  same losses: {r["loss_step160"] == ref}')
PY
done
