source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
lscpu | grep -E "^CPU\(s\)|Thread|Core|Socket|Model name"
span() {
python3 - "$1" "$2" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1])); ev = d["events"]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
times = re.search(r"forked compiles: \d+ jobs, times \[([^\]]*)\]", open(sys.argv[2]).read())
longest = re.search(r"by kernel: (\S+ [\d.]+)", open(sys.argv[2]).read())
tot = sum(map(float, times.group(1).split(","))) if times else float("nan")
print(f"compile_all {t('compile_all end') - t('compile_all begin'):.3f} s | plan end -> compile_all end {t('compile_all end') - t('plan end'):.3f} | jobs' times sum {tot:.2f} s | longest {longest.group(1) if longest else '?'} | lockstep begins {t('_lockstep begin'):.3f}")
PY
}
# phase3a cut to 300 steps, an empty Triton cache each run, forked compile workers capped at W (16 = the machine's CPUs)
for r in 1 2; do for W in 16 12 8 6; do
  rm -rf /tmp/tc /tmp/short; export TRITON_CACHE_DIR=/tmp/tc
  PYPHASE_COMPILE_WORKERS=$W timeout 120 python3 .dev/timeline.py /tmp/tl_$W$r.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress > /tmp/short_$W$r.txt 2>&1
  echo "round $r workers $W: $(span /tmp/tl_$W$r.json /tmp/short_$W$r.txt)"
done; done 2>&1 | tee $OUT/compile_workers_ab.txt
cp /tmp/short_81.txt $OUT/short_w8_round1.txt; cp /tmp/short_161.txt $OUT/short_w16_round1.txt
