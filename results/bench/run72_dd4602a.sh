source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
which ncu; ncu --version | tail -1
python3 .dev/ncu_step.py   # warm the Triton cache
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
for k in _attn_fwd_kernel _attn_bwd_dq_kernel _attn_bwd_dkdv_kernel _mlp_block_fwd_kernel _mlp_bwd_dw_kernel _add_ln_bwd_kernel nvjet; do
  echo "=================== $k"
  timeout 120 ncu --clock-control none --profile-from-start off -k regex:$k -c 1 $S python3 .dev/ncu_step.py 2>&1 | grep -v '^==PROF==' | grep -v '^ *$'
done > $OUT/ncu_kernels.txt 2>&1
wc -l $OUT/ncu_kernels.txt; grep -E "^=====|Duration|Achieved Occupancy|Registers Per|Theoretical Occ|Memory Throughput|Compute \(SM\)|L2 Cache Throughput|DRAM Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued" $OUT/ncu_kernels.txt | head -120
