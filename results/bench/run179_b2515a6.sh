source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYTHONPATH=$PWD/benches:$PYTHONPATH
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# does the energy split predict other steps? rates again on this machine, then four steps' joules (NVML) and counts (ncu)
timeout 120 python3 benches/energy_floor.py --seconds 3 --json $OUT/r/energy_floor.json 2>&1 | tee $OUT/r/energy_floor.txt
timeout 240 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager+PYPHASE_RESIDUAL=bf16,eager_unfused,eager,eager+PYPHASE_RESIDUAL=bf16,eager_unfused --out /tmp/prof > $OUT/r/profile_energy_k5_b256.txt 2>&1
timeout 120 python3 benches/profile_step.py --k 5 --b 128 --variants eager,eager --out /tmp/prof > $OUT/r/profile_energy_k5_b128.txt 2>&1
for f in $OUT/r/profile_energy_k5_b256.txt $OUT/r/profile_energy_k5_b128.txt; do
grep -o '"variant": "[^"]*"\|"B": [0-9]*\|"ms_per_step": [0-9.]*\|"joules_per_step": [0-9.]*\|"watts": [0-9.]*\|"sm_mhz": [0-9.]*\|"power_capped": [0-9.]*' $f | paste - - - - - - -; done
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,sm__inst_executed.sum
run_ncu() {  # name, then environment assignments
  name=$1; shift
  env "$@" timeout 150 ncu --clock-control none --profile-from-start off --metrics $M --csv --page raw --log-file $OUT/r/ncu_raw_$name.csv python3 .dev/ncu_traffic.py 2>&1 | tail -1
  python3 .dev/ncu_sum.py $OUT/r/ncu_raw_$name.csv $OUT/r/ncu_totals_$name.json > $OUT/r/ncu_traffic_$name.txt; tail -2 $OUT/r/ncu_traffic_$name.txt | head -1; gzip $OUT/r/ncu_raw_$name.csv
}
run_ncu b256 B=256
run_ncu b256_bf16res B=256 PYPHASE_RESIDUAL=bf16
run_ncu b256_unfused B=256 PYPHASE_MLP_BLOCK=off
run_ncu b128 B=128
cd $OUT && tar czf results.tgz r && rm -rf r
