source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
echo "PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE-unset}"; TD=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))"); echo "torch dir $TD"; ls $TD/__pycache__ 2>&1 | head -3; test -w $TD && echo writable || echo read-only
CMD="train phase3a --device cuda --seeds 1 --no-progress"
( /usr/bin/time -v timeout 200 python3 .dev/timeline.py $OUT/tl_cold.json $CMD --out /root/t3a ) > $OUT/phase3a_cold_timeline.txt 2>&1
grep -E "Elapsed|timeline" $OUT/phase3a_cold_timeline.txt | grep -v "write_run"; grep -iE "error|Traceback" -A12 $OUT/phase3a_cold_timeline.txt | head -40
python3 -m pyphase results export phase3a --runs /root/t3a --dest /tmp/exp --corpus $PYPHASE_DATA --command "/usr/bin/time -v python3 .dev/timeline.py OUT.json $CMD --out /root/t3a" --note "first command on a fresh H100 (device tool nvidia-h100-x1), commit $1, run under .dev/timeline.py (results/bench/timeline_b2282e1.py)" > /dev/null && cp /tmp/exp/phase3a/summary.csv $OUT/phase3a_summary.csv && cp /tmp/exp/phase3a/provenance.json $OUT/phase3a_provenance.json
python3 - <<'PY'
import os, polars as pl
a = pl.read_csv(os.environ["OUT"] + "/phase3a_summary.csv"); b = pl.read_csv("results/phase3a/rerun42_seed0_summary.csv")
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step"]
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("summary equal to rerun42 (b24bfc2) bit for bit:", {c: bool((j[c] == j[c + "_o"]).fill_null(True).all()) for c in cols})
print(a.select("batch_size", "lr", "wall_time_s", "setup_time_s").head(1), a.select("batch_size", "setup_time_s").tail(1))
PY
( /usr/bin/time -v timeout 200 python3 .dev/timeline.py $OUT/tl_warm.json $CMD --out /root/t3a_warm ) > $OUT/phase3a_warm_timeline.txt 2>&1
grep -E "Elapsed|timeline" $OUT/phase3a_warm_timeline.txt | grep -v "write_run"
for i in 1 2; do /usr/bin/time -f "import torch (no prefix) %e s" python3 -c "import torch"; done
for i in 1 2; do PYTHONPYCACHEPREFIX=/tmp/pyc /usr/bin/time -f "import torch (PYTHONPYCACHEPREFIX, run $i) %e s" python3 -c "import torch"; done
PYTHONPYCACHEPREFIX=/tmp/pyc /usr/bin/time -f "import pyphase.train etc. (PYTHONPYCACHEPREFIX warm) %e s" python3 -c "import pyphase.cli, pyphase.sweep, pyphase.train, torch; torch.cuda.init()"
python3 -c "import torch; print('green contexts:', hasattr(torch.cuda, 'green_contexts'), [n for n in dir(torch.cuda) if 'reen' in n])"
