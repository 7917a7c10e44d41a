# The trainer check on whatever Hopper the device tool lends (run189 named the H100 in its export note;
# here the device's name comes from nvidia-smi): cold phase3a and bench_train as run189 did, then a warm
# phase3b, the GPU's energy rates (benches/energy_floor.py) and the CUDA tests.
# Usage: bash .dev/run190.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run190.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
nvidia-smi --query-gpu=name,driver_version,power.limit,power.max_limit,clocks.max.sm,clocks.max.mem,memory.total --format=csv | tee $OUT/r/gpu.txt
Q=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu
( nvidia-smi --query-gpu=$Q,clocks_event_reasons.active --format=csv -l 1 || nvidia-smi --query-gpu=$Q --format=csv -l 1 ) > $OUT/r/smi.csv 2>&1 &
SMI=$!
# 1. cold phase3a under the timeline wrapper (the first pyphase command on this machine)
CMD="python3 .dev/timeline.py $OUT/r/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/r/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import torch|compile_all|_lockstep|fast exit)" $OUT/r/timeline_cold.txt; grep -E "Elapsed|File system inputs" $OUT/r/timeline_cold.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" | tee -a $OUT/r/gpu.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh $GPU (device tool $3), commit $1 (session $2; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/r/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/r/phase3a_provenance.json
kill $SMI; pkill -f 'nvidia-smi --query'; sleep 1
# 2. warm phase3b (Triton's cache now holds phase3a's kernels, not phase3b's B = 32 ones)
CMD3B="python3 -m pyphase train phase3b --device cuda --seeds 1 --out /root/t3b --no-progress"
( /usr/bin/time -v timeout 200 $CMD3B ) > $OUT/r/phase3b_time.txt 2>&1; grep -E "Elapsed" $OUT/r/phase3b_time.txt
python3 -m pyphase results export phase3b --runs /root/t3b --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD3B" --note "on a $GPU (device tool $3) after phase3a in the same call, commit $1 (session $2)" > /dev/null && cp /tmp/exp/phase3b/summary.csv $OUT/r/phase3b_summary.csv && cp /tmp/exp/phase3b/provenance.json $OUT/r/phase3b_provenance.json
python3 - <<'PY'
import os, polars as pl
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
for name, ref, on in [("phase3a", "results/phase3a/rerun42_seed0_summary.csv", ["batch_size", "lr"]),
                      ("phase3b", "results/phase3b/rerun_b46f7bd_seed0_summary.csv", ["batch_size", "lr", "gradient_clip"])]:
    a = pl.read_csv(os.environ["OUT"] + f"/r/{name}_summary.csv"); b = pl.read_csv(ref)
    a, b = (x.with_columns(pl.col("gradient_clip").fill_null(-1.0)) for x in (a, b))
    j = a.join(b, on=on, suffix="_o")
    print(name, "rows", j.height, "equal to", ref, "bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
    print(name, "max |diff| final_val_loss", (j["final_val_loss"] - j["final_val_loss_o"]).abs().max())
PY
# 3. bench_train
timeout 200 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/r/bench_train.json > $OUT/r/bench_train.txt 2>&1; tail -14 $OUT/r/bench_train.txt
# 4. what a joule buys on this GPU
( cd benches && timeout 90 python3 energy_floor.py --seconds 3 --json $OUT/r/energy_floor.json ) > $OUT/r/energy_floor.txt 2>&1; tail -12 $OUT/r/energy_floor.txt
( timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_forked_compile.py tests/test_attention.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit or fill or longest or share" 2>&1 | tail -4 ) | tee $OUT/r/pytest_cuda.txt
cd $OUT && tar czf results.tgz r && rm -rf r
