source .dev/setup.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 240 python3 .dev/multistep_ab.py 2>&1 | tail -14 | tee $OUT/multistep_ab.txt
B=256 timeout 200 ncu --clock-control none --profile-from-start off --kernel-name regex:"_attn_fwd|_attn_bwd_dq|_attn_bwd_dkdv|_mlp_bwd_dw|_mlp_block_fwd|_add_ln_bwd" --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --page details --log-file $OUT/ncu_sections_k5_b256.txt python3 .dev/ncu_traffic.py 2>&1 | tail -3
grep -c "_kernel" $OUT/ncu_sections_k5_b256.txt
