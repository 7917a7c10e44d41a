source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
span() {  # timeline json, process end epoch -> the phases this change touches
python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ev = d["events"]; end = float(sys.argv[2]) - d["start_epoch"]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
jobs_end = max([s for s, n in ev if n.startswith("job ") and n.endswith(" end")] or [float("nan")])
last = max(t("cli.main returned"), t("fast exit"))
print(f"wall {end:.3f} s | compile_all begin->plan begin {t('plan begin') - t('compile_all begin'):.3f} | plan end->first job "
      f"{min(s for s, n in ev if n.startswith('job ')) - t('plan end'):.3f} | last job end->compile_all end {t('compile_all end') - jobs_end:.3f} "
      f"| compile_all {t('compile_all end') - t('compile_all begin'):.3f} | lockstep start {t('_lockstep begin'):.3f} | "
      f"lockstep {t('_lockstep end') - t('_lockstep begin'):.3f} | last stamp->process end {end - last:.3f}")
PY
}
# 1. cold phase3a under the timeline wrapper (the first command on this machine)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1; END=$(date +%s.%N)
span $OUT/timeline_cold.json $END
grep -E "Elapsed" $OUT/timeline_cold.txt; grep -iE "error|Traceback|warn" -A12 $OUT/timeline_cold.txt | head -30
grep "\[timeline\]" $OUT/timeline_cold.txt | grep -v " job " | cut -c1-200 | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 22: compiler prepared early, launchers prebuilt, fast exit; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
# 2. A/B on this machine: phase3a cut to 300 steps, an empty Triton cache each run
for r in 1 2 3; do for v in new old; do
  rm -rf /tmp/tc /tmp/short; export TRITON_CACHE_DIR=/tmp/tc
  if [ $v = old ]; then E="PYPHASE_PREBUILD_LAUNCHERS=0 PYPHASE_FAST_EXIT=0"; else E=""; fi
  env $E timeout 120 python3 .dev/timeline.py /tmp/tl_$v$r.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress > /tmp/short_$v$r.txt 2>&1; END=$(date +%s.%N)
  echo "round $r $v: $(span /tmp/tl_$v$r.json $END)"
done; done 2>&1 | tee $OUT/ab_short.txt
unset TRITON_CACHE_DIR
# 3. CUDA tests of what changed
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_forked_compile.py tests/test_cli_train.py -k "cuda or launcher or fast_exit or forked or precompiled" 2>&1 | tail -8 ) | tee $OUT/pytest_cuda.txt
