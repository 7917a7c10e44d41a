source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
for b in 256 128; do
  timeout 250 python3 benches/profile_step.py --k 5 --b $b --variants eager --ops --out $OUT 2>&1 | tail -25
done
ls $OUT
