source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
TOML=results/bench/phase3a_short_a4e0fdb.toml
for i in 0 1 2 3; do
  for v in diag all; do
    if [ $v = all ]; then export PYPHASE_ATTN_MASK=all; else unset PYPHASE_ATTN_MASK; fi
    export TRITON_CACHE_DIR=/tmp/tc_${v}_$i
    /usr/bin/time -f "$v $i wall %e s" timeout 120 python3 -m pyphase train $TOML --device cuda --seeds 1 --out /root/s_${v}_$i --no-progress > /tmp/log_${v}_$i.txt 2>&1
    tail -1 /tmp/log_${v}_$i.txt; grep -iE "Traceback|Error" -A5 /tmp/log_${v}_$i.txt | head -12
    python3 -c "
import polars as pl, glob
fs = sorted(glob.glob('/root/s_${v}_$i/phase3a_short/*/summary.parquet'))
d = pl.concat([pl.read_parquet(f) for f in fs])
print('$v $i', 'runs', len(fs), 'setup_s', sorted(set(round(x, 3) for x in d['setup_time_s'].to_list())), 'wall_s', round(d['wall_time_s'][0], 2), 'val', [round(x, 6) for x in d['final_val_loss'].to_list()])"
  done
done 2>&1 | tee $OUT/setup_ab.txt
