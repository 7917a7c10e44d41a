source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# phase3a cut to 300 steps, first command on the machine, under the timeline wrapper
( /usr/bin/time -v timeout 120 python3 .dev/timeline.py /tmp/tl.json train results/bench/phase3a_short_a4e0fdb.toml --device cuda --seeds 1 --out /tmp/short --no-progress ) > $OUT/short_cold.txt 2>&1
grep -E "Elapsed|compile_all|plan |_lockstep|fast exit|Traceback|rror" $OUT/short_cold.txt | cut -c1-160
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 250 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_forked_compile.py tests/test_cli_train.py tests/test_train.py -k "cuda or launcher or fast_exit or forked or precompiled" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
