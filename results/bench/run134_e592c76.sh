source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
( timeout 400 python3 .dev/gluon_dw.py bench 2>&1 ) | tee $OUT/gluon_dw_bench.txt | grep -v "^  File\|^    " 
