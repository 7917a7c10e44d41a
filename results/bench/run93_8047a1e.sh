source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train .dev/phase3a_s12.toml --device cuda --out /root/s12 --no-progress"
( /usr/bin/time -v timeout 280 $CMD ) > $OUT/s12_fp32_timing.txt 2>&1
grep -E "Elapsed" $OUT/s12_fp32_timing.txt; grep -iE "error|Traceback" -A12 $OUT/s12_fp32_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/s12 --dest /tmp/e1 --corpus $PYPHASE_DATA --command "$CMD" --note "phase3a with seeds 1 and 2 (experiments/phase3a.toml with seeds = [1, 2]), fp32 residual stream (default); H100 (device tool nvidia-h100-x1), commit $1" > /dev/null && cp /tmp/e1/phase3a/summary.csv $OUT/s12_fp32_summary.csv && cp /tmp/e1/phase3a/provenance.json $OUT/s12_fp32_provenance.json
CMD2="python3 -m pyphase train .dev/phase3a_s12.toml --device cuda --out /root/s12b --no-progress"
( PYPHASE_RESIDUAL=bf16 /usr/bin/time -v timeout 260 $CMD2 ) > $OUT/s12_bf16res_timing.txt 2>&1
grep -E "Elapsed" $OUT/s12_bf16res_timing.txt; grep -iE "error|Traceback" -A12 $OUT/s12_bf16res_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/s12b --dest /tmp/e2 --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16 $CMD2" --note "phase3a with seeds 1 and 2, opt-in bf16 residual stream (PYPHASE_RESIDUAL=bf16); H100 (device tool nvidia-h100-x1), commit $1, after the fp32 run in the same call" > /dev/null && cp /tmp/e2/phase3a/summary.csv $OUT/s12_bf16res_summary.csv && cp /tmp/e2/phase3a/provenance.json $OUT/s12_bf16res_provenance.json
python3 - <<'PY'
import os, polars as pl
o = os.environ["OUT"]
a = pl.read_csv(o + "/s12_fp32_summary.csv"); b = pl.read_csv(o + "/s12_bf16res_summary.csv")
j = a.join(b, on=["batch_size", "lr", "seed"], suffix="_bf16")
print(j.select("batch_size", "lr", "seed", "final_val_loss", "final_val_loss_bf16", "converged", "converged_bf16", "avg_clip_frequency", "avg_clip_frequency_bf16").sort("batch_size", "lr", "seed"))
print(a.select("wall_time_s", "setup_time_s").head(1), b.select("wall_time_s", "setup_time_s").head(1))
PY
