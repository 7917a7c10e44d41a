source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# 1. cold phase3a under the timeline wrapper (the first pyphase command on this machine)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1
grep -E "\] +[0-9.]+ s  (import|coldstart|load_corpus|start_compiles|take_early|_lockstep|compile_all|fast exit|child warmed)" $OUT/timeline_cold.txt | head -40; grep Elapsed $OUT/timeline_cold.txt
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 25: compile workers forked when the sweep starts, jobs sent as the dry pass records them; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
PY
# 2. A/B: early compile workers on / off, phase3a cut to 300 steps, an empty Triton cache each run
span() {
python3 - "$1" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["events"]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
print(f"imports done {t('import pyphase.sweep'):.3f} | start_compiles end {t('start_compiles end'):.3f} | dry pass {t('PackTrainer.kernel_launches begin'):.3f}-{t('PackTrainer.kernel_launches end'):.3f} | compile_all {t('compile_all begin'):.3f}-{t('compile_all end'):.3f} ({t('compile_all end') - t('compile_all begin'):.3f} s) | lockstep begins {t('_lockstep begin'):.3f}")
PY
}
for r in 1 2 3; do for E in 1 0; do
  rm -rf /tmp/tc /tmp/short; export TRITON_CACHE_DIR=/tmp/tc
  PYPHASE_COMPILE_EARLY=$E timeout 120 python3 .dev/timeline.py /tmp/tl_$E$r.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress > /tmp/short_$E$r.txt 2>&1
  echo "round $r early $E: $(span /tmp/tl_$E$r.json)"
done; done 2>&1 | tee $OUT/early_ab.txt
unset TRITON_CACHE_DIR
# 3. attention backward launch A/B, packs side by side
python3 .dev/attn_launch_ab.py 2>&1 | tee $OUT/attn_launch_ab.txt
# 4. CUDA tests
python3 -m pytest -q tests/test_kernels.py tests/test_forked_compile.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit or fill or longest or share or early or forked or warm or reachable" 2>&1 | tail -4 | tee $OUT/pytest_cuda.txt
