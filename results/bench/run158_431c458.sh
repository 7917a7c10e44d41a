source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
python3 - <<'PY'
import importlib.util, os, sys, torch, numpy, triton, polars
for m in (torch, triton, numpy, polars):
    init = m.__file__
    print(m.__name__, "pycache:", os.path.exists(importlib.util.cache_from_source(init)), "dir writable:", os.access(os.path.dirname(init), os.W_OK))
print("dont_write_bytecode", sys.flags.dont_write_bytecode, "PYTHONDONTWRITEBYTECODE", os.environ.get("PYTHONDONTWRITEBYTECODE"), "cpus", os.cpu_count(), "HOME", os.environ.get("HOME"))
PY
span() {
python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1])); ev = d["events"]; end = float(sys.argv[3]) - d["start_epoch"]
t = lambda name: max([s for s, n in ev if n.startswith(name)] or [float("nan")])
print(f"wall {end:.3f} s | imports done {t('import pyphase.sweep'):.3f} | import torch {t('import torch') - t('coldstart.start') if t('coldstart.start') == t('coldstart.start') else t('import torch') - t('import pyphase.cli'):.3f} | compile_all {t('compile_all end') - t('compile_all begin'):.3f} | lockstep begins {t('_lockstep begin'):.3f} | lockstep {t('_lockstep end') - t('_lockstep begin'):.3f} | lockstep end->process end {end - t('_lockstep end'):.3f}")
PY
}
# 1. cold phase3a under the timeline wrapper (the first pyphase command on this machine; an empty pyphase bytecode cache)
CMD="python3 .dev/timeline.py $OUT/timeline_cold.json train phase3a --device cuda --seeds 1 --out /root/t3a --no-progress"
( /usr/bin/time -v timeout 200 $CMD ) > $OUT/timeline_cold.txt 2>&1; END=$(date +%s.%N)
span $OUT/timeline_cold.json $OUT/timeline_cold.txt $END
grep -E "\] +[0-9.]+ s  (import|coldstart)" $OUT/timeline_cold.txt
echo "cache files: $(find /root/.cache/pyphase/pycache -name '*.pyc' | wc -l)"
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v $CMD" --note "first pyphase command on a fresh H100 (device tool nvidia-h100-x1), commit $1 (session 24: coldstart bytecode cache; under the timeline wrapper)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
# 2. imports alone, fresh processes, three rounds: plain; coldstart with an empty cache; coldstart with that cache filled
IMP="import pyphase.cli, pyphase.sweep, pyphase.train, torch; torch.cuda.init()"
for r in 1 2 3; do
  rm -rf /root/pc
  /usr/bin/time -f "round $r plain %e s" python3 -c "$IMP"
  PYPHASE_PYCACHE=/root/pc /usr/bin/time -f "round $r coldstart empty cache %e s" python3 -c "from pyphase import coldstart; w = coldstart.start(); $IMP; print(len(w.procs), 'workers', w.files, 'files')"
  sleep 2; PYPHASE_PYCACHE=/root/pc /usr/bin/time -f "round $r coldstart filled cache %e s" python3 -c "from pyphase import coldstart; w = coldstart.start(); $IMP; print(len(w.procs), 'workers', w.files, 'files')"
done 2>&1 | tee $OUT/import_ab.txt
