source .dev/setup.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 300 ncu --clock-control none --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section ComputeWorkloadAnalysis --page details --log-file $OUT/ncu_dw_gluon.txt python3 .dev/gluon_dw.py ncu 2>&1 | tail -3
grep -E "dw_kernel|Duration|L2 Cache Throughput|DRAM Throughput|Memory Throughput|L1/TEX Hit|L2 Hit|Compute \(SM\) Throughput|Achieved Occupancy|Issue Slots Busy|Stall|Warp Cycles Per Issued|Registers Per|Mem Busy|Max Bandwidth|Mem Pipes" $OUT/ncu_dw_gluon.txt | head -90
