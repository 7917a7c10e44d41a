source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 200 python3 benches/bench_working_copy.py --k 4 --batches 32,256 --steps 200 --rounds 3 --json $OUT/bench_working_copy_k4_b32_256.json 2>&1 | tail -5 | tee $OUT/bench_working_copy_k4_b32_256.txt
timeout 150 python3 benches/bench_working_copy.py --k 7 --batches 32 --steps 300 --rounds 3 --json $OUT/bench_working_copy_k7_b32.json 2>&1 | tail -5 | tee $OUT/bench_working_copy_k7_b32.txt
timeout 150 python3 benches/bench_working_copy.py --k 1 --batches 128 --steps 300 --rounds 3 --json $OUT/bench_working_copy_k1_b128.json 2>&1 | tail -5 | tee $OUT/bench_working_copy_k1_b128.txt
