source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
TOML=results/bench/phase3a_short_a4e0fdb.toml
sync; echo 3 > /proc/sys/vm/drop_caches && echo "page cache dropped" || echo "cannot drop the page cache"
for i in 0 1 2; do
  for v in import tiny none threads; do
    if [ $v = threads ]; then [ $i = 2 ] && continue; export PYPHASE_COMPILE_PROCS=0; else export PYPHASE_COMPILE_PROCS=1; fi
    export PYPHASE_COMPILE_WARM=$v TRITON_CACHE_DIR=/tmp/tc_${v}_$i
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    /usr/bin/time -f "$v round $i wall %e s" timeout 120 python3 .dev/timeline.py /tmp/tl_${v}_$i.json train $TOML --device cuda --seeds 1 --out /root/s_${v}_$i --no-progress > /tmp/log_${v}_$i.txt 2>&1
    grep -E "wall|compile_all|forked compiles:|plan" /tmp/log_${v}_$i.txt | sed "s/^/$v $i /"; grep -iE "Traceback|Error" -A5 /tmp/log_${v}_$i.txt | head -12
    python3 -c "
import polars as pl, glob
fs = sorted(glob.glob('/root/s_${v}_$i/phase3a_short/*/summary.parquet'))
d = pl.concat([pl.read_parquet(f) for f in fs])
print('$v round $i', 'runs', len(fs), 'setup_s', sorted(set(round(x, 3) for x in d['setup_time_s'].to_list())), 'wall_s', round(d['wall_time_s'][0], 2), 'val', [round(x, 6) for x in d['final_val_loss'].to_list()])"
  done
done 2>&1 | tee $OUT/setup_warm_ab.txt
