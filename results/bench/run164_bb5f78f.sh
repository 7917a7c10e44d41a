source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 200 python3 .dev/child_faults.py 2>&1 | grep -v Warning | tee $OUT/child_faults.txt
