source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYPHASE_RESIDUAL=bf16grad
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_bf16grad_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_bf16grad_timing.txt; grep -iE "error|Traceback" -A12 $OUT/phase3a_bf16grad_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/e0 --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16grad /usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1, the residual stream's gradient in bf16 (PYPHASE_RESIDUAL=bf16grad)" > /dev/null && cp /tmp/e0/phase3a/summary.csv $OUT/s0_bf16grad_summary.csv && cp /tmp/e0/phase3a/provenance.json $OUT/s0_bf16grad_provenance.json
CMD2="python3 -m pyphase train .dev/phase3a_s12.toml --device cuda --out /root/s12 --no-progress"
( /usr/bin/time -v timeout 300 $CMD2 ) > $OUT/s12_bf16grad_timing.txt 2>&1
grep -E "Elapsed" $OUT/s12_bf16grad_timing.txt; grep -iE "error|Traceback" -A12 $OUT/s12_bf16grad_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/s12 --dest /tmp/e1 --corpus $PYPHASE_DATA --command "PYPHASE_RESIDUAL=bf16grad $CMD2" --note "phase3a with seeds 1 and 2 (experiments/phase3a.toml with seeds = [1, 2]: packs of K = 10), the residual stream's gradient in bf16 (PYPHASE_RESIDUAL=bf16grad); H100 (device tool nvidia-h100-x1), commit $1, after the seed-0 run in the same call" > /dev/null && cp /tmp/e1/phase3a/summary.csv $OUT/s12_bf16grad_summary.csv && cp /tmp/e1/phase3a/provenance.json $OUT/s12_bf16grad_provenance.json
ls $OUT
