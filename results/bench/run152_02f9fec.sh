source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
span() {  # timeline json, its stderr, process end epoch -> the phases this change touches
python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1])); ev = d["events"]; end = float(sys.argv[3]) - d["start_epoch"]
jobs = [(float(m.group(1)), m.group(2)) for m in re.finditer(r"\[timeline\]\s+([\d.]+) s  job \d+ \S+ (start|end)", open(sys.argv[2]).read())]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
first = min([s for s, k in jobs if k == "start"] or [float("nan")]); last_job = max([s for s, k in jobs if k == "end"] or [float("nan")])
last = max(v for v in (t("cli.main returned"), t("fast exit"), t("atexit")) if v == v)
print(f"wall {end:.3f} s | compile_all begin->plan begin {t('plan begin') - t('compile_all begin'):.3f} | plan {t('plan end') - t('plan begin'):.3f} "
      f"| plan end->first job {first - t('plan end'):.3f} | last job end->compile_all end {t('compile_all end') - last_job:.3f} "
      f"| compile_all {t('compile_all end') - t('compile_all begin'):.3f} | lockstep begins {t('_lockstep begin'):.3f} | "
      f"lockstep {t('_lockstep end') - t('_lockstep begin'):.3f} | lockstep end->process end {end - t('_lockstep end'):.3f} | last stamp->process end {end - last:.3f}")
PY
}
# 1. cold phase3a under the timeline wrapper (the first command on this machine)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1; END=$(date +%s.%N)
span $OUT/timeline_cold.json $OUT/timeline_cold.txt $END
grep -E "Elapsed" $OUT/timeline_cold.txt; grep -iE "error|Traceback|warn" -A12 $OUT/timeline_cold.txt | head -30
grep "\[timeline\]" $OUT/timeline_cold.txt | grep -v " job " | cut -c1-200 | head -30
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 23: pyphase/ as at session 22.s final d6f9c18, under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
timeout 260 python3 benches/bench_train.py --device cuda --steps 200 --json $OUT/bench_train.json > $OUT/bench_train.txt 2>&1; tail -14 $OUT/bench_train.txt
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_train.py tests/test_cli_train.py -k "cuda or launcher or fast_exit" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
