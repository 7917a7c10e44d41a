source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
CMD="python3 -m pyphase train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/phase3a_timing.txt 2>&1
grep -E "Elapsed" $OUT/phase3a_timing.txt; grep -iE "error|Traceback" -A8 $OUT/phase3a_timing.txt | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1; both packs side by side in one CUDA graph" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 -c "
import polars as pl; d = pl.read_csv('$OUT/phase3a_summary.csv'); print(d.select('batch_size','lr','final_val_loss','converged','wall_time_s','setup_time_s'))"
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py tests/test_attention.py -k "cuda or precompiled" 2>&1 | tail -4 > $OUT/pytest_cuda.txt ); cat $OUT/pytest_cuda.txt
for i in 1 2; do
  for b in 256 128; do
    echo "== new B=$b"; timeout 70 python3 benches/profile_step.py --k 5 --b $b --variants eager --out /tmp/pn$b$i 2>&1 | grep -E "^\{|per-step|rror" | cut -c1-300
    echo "== old B=$b"; timeout 70 python3 .dev/swap.py pyphase.attention .dev/old/attention_890ad49.py benches/profile_step.py --k 5 --b $b --variants eager --out /tmp/po$b$i 2>&1 | grep -E "^\{|per-step|rror" | cut -c1-300
  done
done > $OUT/ab_attention.txt 2>&1; cat $OUT/ab_attention.txt
