source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 540 python3 .dev/energy_ab.py 3 400 2>&1 | tee $OUT/energy_ab_side_by_side.txt | grep -v Warning
