source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cp pyphase/kernels.py /tmp/kernels_new.py; cp .dev/kernels_old.py /tmp/kernels_old.py
TOML=results/bench/phase3a_short_a4e0fdb.toml
for i in 1 2 3; do
  for v in new old; do
    cp /tmp/kernels_$v.py pyphase/kernels.py
    export TRITON_CACHE_DIR=/tmp/tc_${v}_$i
    /usr/bin/time -f "$v $i wall %e s" timeout 120 python3 -m pyphase train $TOML --device cuda --seeds 1 --out /root/s_${v}_$i --no-progress > /tmp/log_${v}_$i.txt 2>&1
    tail -1 /tmp/log_${v}_$i.txt; grep -iE "Traceback|Error" -A5 /tmp/log_${v}_$i.txt | head -12
    python3 -c "
import polars as pl, glob
fs = sorted(glob.glob('/root/s_${v}_$i/phase3a_short/runs/*/summary.parquet'))
d = pl.concat([pl.read_parquet(f) for f in fs])
print('$v $i', 'runs', len(fs), 'setup_s', sorted(set(round(x, 3) for x in d['setup_time_s'].to_list())), 'wall_s', round(d['wall_time_s'][0], 2), 'val', [round(x, 6) for x in d['final_val_loss'].to_list()])"
  done
done 2>&1 | tee $OUT/setup_ab.txt
cp /tmp/kernels_new.py pyphase/kernels.py
unset TRITON_CACHE_DIR
( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_train.py tests/test_packing.py -k "cuda or precompiled" 2>&1 | tail -5 ) | tee $OUT/pytest_cuda.txt
