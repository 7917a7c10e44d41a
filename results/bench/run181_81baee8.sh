source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYTHONPATH=$PWD/benches:$PYTHONPATH
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# the attention backward's two passes in one grid: the same bits (CUDA tests), then energy a round side by side
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_attention.py -k "cuda or co_switch" 2>&1 | tail -4 | tee $OUT/r/pytest_attention_co.txt
timeout 300 python3 .dev/co_ab.py 3 400 2>&1 | tee $OUT/r/co_ab_side_by_side.txt | grep -v Warning
# DRAM bytes of one K = 5, B = 256 step, kernel by kernel, without ncu flushing the caches between kernels
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum
run_ncu() {  # name, then environment assignments
  name=$1; shift
  env "$@" timeout 80 ncu --clock-control none --cache-control none --profile-from-start off --metrics $M --csv --page raw --log-file $OUT/r/ncu_raw_$name.csv python3 .dev/ncu_traffic.py 2>&1 | tail -1
  python3 .dev/ncu_sum.py $OUT/r/ncu_raw_$name.csv $OUT/r/ncu_totals_$name.json > $OUT/r/ncu_traffic_$name.txt; tail -2 $OUT/r/ncu_traffic_$name.txt | head -1; gzip $OUT/r/ncu_raw_$name.csv
}
run_ncu nocache_base B=256 PYPHASE_ATTN_CO=0
run_ncu nocache_co128 B=256 PYPHASE_ATTN_CO=128
cd $OUT && tar czf results.tgz r && rm -rf r
