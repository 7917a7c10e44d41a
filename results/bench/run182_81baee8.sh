source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYTHONPATH=$PWD/benches:$PYTHONPATH
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# why the attention backward in one grid takes more energy: one pack's joules a step, then ncu's counts
timeout 150 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager+PYPHASE_ATTN_CO=128,eager+PYPHASE_ATTN_CO=512,eager,eager+PYPHASE_ATTN_CO=128,eager+PYPHASE_ATTN_CO=512 --out /tmp/prof > $OUT/r/profile_energy_co_k5_b256.txt 2>&1
grep -o '"variant": "[^"]*"\|"ms_per_step": [0-9.]*\|"joules_per_step": [0-9.]*\|"watts": [0-9.]*\|"sm_mhz": [0-9.]*\|"power_capped": [0-9.]*' $OUT/r/profile_energy_co_k5_b256.txt | paste - - - - - -
ncu --query-metrics > /tmp/qm.txt 2>&1
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,sm__inst_executed.sum
for m in smsp__warp_issue_stalled_no_instruction_per_warp_active l1tex__t_bytes_pipe_lsu_mem_local_op_ld l1tex__t_bytes_pipe_lsu_mem_local_op_st launch__registers_per_thread smsp__warps_issue_stalled_no_instruction; do
  if grep -q "^$m " /tmp/qm.txt; then case $m in launch__*) M=$M,$m;; *_per_warp_active) M=$M,$m.pct;; *) M=$M,$m.sum;; esac; fi
done
echo "metrics: $M" | tee $OUT/r/ncu_metrics_used.txt
grep -i "no_instruction\|local_op" /tmp/qm.txt | head -20 >> $OUT/r/ncu_metrics_used.txt
run_ncu() {  # name, then environment assignments
  name=$1; shift
  env "$@" timeout 110 ncu --clock-control none --cache-control none --profile-from-start off --metrics $M --csv --page raw --log-file $OUT/r/ncu_raw_$name.csv python3 .dev/ncu_traffic.py 2>&1 | tail -1
  python3 .dev/ncu_sum.py $OUT/r/ncu_raw_$name.csv $OUT/r/ncu_totals_$name.json > $OUT/r/ncu_traffic_$name.txt; grep "attn_bwd\|TOTAL" $OUT/r/ncu_traffic_$name.txt; gzip $OUT/r/ncu_raw_$name.csv
}
run_ncu full_base B=256 PYPHASE_ATTN_CO=0
run_ncu full_co128 B=256 PYPHASE_ATTN_CO=128
run_ncu full_co512 B=256 PYPHASE_ATTN_CO=512
cd $OUT && tar czf results.tgz r && rm -rf r
