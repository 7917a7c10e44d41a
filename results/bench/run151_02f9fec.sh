source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
( /usr/bin/time -v timeout 120 python3 .dev/timeline_prof.py /tmp/tl.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress ) > $OUT/short_cold_prof.txt 2>&1
grep -E "Elapsed|kernel_launches|__init__|compile_all|_lockstep|Traceback|rror" $OUT/short_cold_prof.txt | cut -c1-160
for i in 1 2 3; do python3 .dev/import_ab.py seq; python3 .dev/import_ab.py thread; done 2>&1 | tee $OUT/import_ab.txt
head -60 $OUT/prof_kernel_launches.txt
