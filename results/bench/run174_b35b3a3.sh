source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# 1. bench_train with its energy columns (NVML), as committed
timeout 280 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train_energy.json > $OUT/bench_train_energy.txt 2>&1; tail -14 $OUT/bench_train_energy.txt
# 2. the B = 256 pack and phase3a's packs side by side over longer windows (2000 steps / rounds)
timeout 250 python3 benches/bench_train.py --device cuda --batches 256 --packs 5 --steps 2000 --json $OUT/bench_train_long.json > $OUT/bench_train_long.txt 2>&1; tail -8 $OUT/bench_train_long.txt
