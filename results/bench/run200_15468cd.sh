# Session 44 on a host of four H200s: phase3a through torchrun over all GPUs (rank r takes configs r, r+4, ...:
# six of the ten configs train as lone models, K = 1), compared with the one-GPU rerun96 (packs of 5) bit for
# bit; then phase2_5 the same way (20 configs x 10,000 steps).
# Usage: bash .dev/run200.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run200.sh COMMIT SESSION KIND}"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); NG=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.sm,memory.total --format=csv > $OUT/r/gpu.txt
nvidia-smi topo -m >> $OUT/r/gpu.txt 2>&1; nproc >> $OUT/r/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.device_count())" | tee -a $OUT/r/gpu.txt
Q=index,timestamp,clocks.sm,power.draw,utilization.gpu,memory.used,clocks_event_reasons.active
nvidia-smi --query-gpu=$Q --format=csv -l 1 > $OUT/r/smi.csv 2>&1 &
SMI=$!
TR="python3 -m torch.distributed.run --standalone --nproc-per-node $NG -m pyphase"
for e in phase3a phase2_5; do
  C="$TR train $e --device cuda --seeds 1 --out /root/t --no-progress"
  echo "== $C"; ( /usr/bin/time -v timeout 250 $C ) > $OUT/r/${e}_x$NG.txt 2>&1; echo rc=$?; grep -E "Elapsed|Maximum res" $OUT/r/${e}_x$NG.txt
  grep -E "rank [0-9].*(pack|K ?=)|trained" $OUT/r/${e}_x$NG.txt | head -12
  python3 -m pyphase results export $e --runs /root/t --dest /tmp/e --corpus $PYPHASE_DATA --command "/usr/bin/time -v $C" --note "torchrun over $NG GPUs, one rank per GPU, of a host of $NG x $GPU (device tool $3)$( [ $e = phase3a ] && echo ', the first pyphase command on the host' || echo ', after phase3a'), commit $1 (session $2)" > /dev/null && cp /tmp/e/$e/summary.csv $OUT/r/${e}_x${NG}_summary.csv && cp /tmp/e/$e/provenance.json $OUT/r/${e}_x${NG}_provenance.json
done
kill $SMI; pkill -f 'nvidia-smi --query'
python3 - <<'PY' | tee $OUT/r/phase3a_x4_vs_rerun96.txt
import glob, os, polars as pl
cols = ["final_train_loss", "final_val_loss", "train_loss_std", "avg_grad_norm_before", "avg_grad_norm_after", "avg_clip_frequency", "converged", "diverged_step", "num_steps"]
a = pl.read_csv(glob.glob(os.environ["OUT"] + "/r/phase3a_x*_summary.csv")[0], infer_schema_length=0)
b = pl.read_csv("results/phase3a/rerun96_seed0_summary.csv", infer_schema_length=0)
j = a.join(b, on=["batch_size", "lr"], suffix="_o")
print("rows", j.height, "pack sizes here", j["pack_size"].to_list(), "there", j["pack_size_o"].to_list())
print("bit for bit:", {c: bool((j[c].fill_null("") == j[c + "_o"].fill_null("")).all()) for c in cols})
PY
cd $OUT && tar czf results.tgz r && rm -rf r
