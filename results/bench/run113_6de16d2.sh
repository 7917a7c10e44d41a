source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; which ncu; ncu --version | tail -1
for B in 256 128; do
  B=$B timeout 240 ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv --page raw --log-file $OUT/ncu_raw_b$B.csv python3 .dev/ncu_traffic.py 2>&1 | tail -3
  python3 .dev/ncu_sum.py $OUT/ncu_raw_b$B.csv 3.0e12 | tee $OUT/ncu_traffic_k5_b$B.txt | tail -30
done
timeout 200 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager+PYPHASE_RESIDUAL=bf16,eager 2>&1 | tail -12 | tee $OUT/steps_bf16_stream_b256.txt
