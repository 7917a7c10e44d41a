source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
span() {
python3 - "$1" "$2" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1])); ev = d["events"]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
times = re.search(r"forked compiles: \d+ jobs, times \[([^\]]*)\]", open(sys.argv[2]).read())
longest = re.search(r"by kernel: (\S+ [\d.]+)", open(sys.argv[2]).read())
tot = sum(map(float, times.group(1).split(","))) if times else float("nan")
print(f"compile_all {t('compile_all end') - t('compile_all begin'):.3f} s | plan end -> compile_all end {t('compile_all end') - t('plan end'):.3f} | jobs' times sum {tot:.2f} s | longest {longest.group(1) if longest else '?'} | lockstep begins {t('_lockstep begin'):.3f} | imports done -> lockstep {t('_lockstep begin') - t('import pyphase.sweep'):.3f}")
PY
}
# phase3a cut to 300 steps, an empty Triton cache each run, the parent warming up with a full compile (compile) or not (default)
for r in 1 2; do for V in 0:default 0:compile 1:default 1:compile; do E=${V%%:*}; W=${V##*:}
  rm -rf /tmp/tc /tmp/short; export TRITON_CACHE_DIR=/tmp/tc
  PYPHASE_PREPARE_EARLY=$E PYPHASE_COMPILE_WARM=$W timeout 60 python3 .dev/timeline.py /tmp/tl_$E$W$r.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress > /tmp/short_$E$W$r.txt 2>&1
  echo "round $r early $E warm-up $W: $(span /tmp/tl_$E$W$r.json /tmp/short_$E$W$r.txt)"
done; done 2>&1 | tee $OUT/compile_warm_early_ab.txt
