source .dev/setup.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# .dev/ncu_traffic.py is results/bench/ncu_traffic_6de16d2.py
B=256 timeout 300 ncu --clock-control none --profile-from-start off --kernel-name regex:"_mlp_block_fwd|_attn_fwd|_attn_bwd_dq|_attn_bwd_dkdv|_add_ln_bwd" --launch-count 5 --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section Occupancy --section WarpStateStats --page details --log-file $OUT/ncu_units_k5_b256.txt python3 .dev/ncu_traffic.py 2>&1 | tail -3
grep -E "^  [_a-z]|Duration|L1/TEX Cache Throughput|L2 Cache Throughput|DRAM Throughput|Issue Slots Busy|L2 Hit Rate|highest-utilized|Achieved Active Warps" $OUT/ncu_units_k5_b256.txt | cut -c1-150
