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
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 23 final code; pyphase/ as at d6f9c18; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
