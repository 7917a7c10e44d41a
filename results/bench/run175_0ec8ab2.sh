source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# profile_step with its energy columns: the default step, the opt-in bf16 residual stream (fewer bytes), the default again
timeout 300 python3 benches/profile_step.py --k 5 --b 256 --variants eager,eager+PYPHASE_RESIDUAL=bf16,eager,eager+PYPHASE_RESIDUAL=bf16,eager --out /tmp/prof > $OUT/profile_energy_k5_b256.txt 2>&1
grep -o '"variant": "[^"]*"\|"ms_per_step": [0-9.]*\|"joules_per_step": [0-9.]*\|"watts": [0-9.]*\|"sm_mhz": [0-9.]*\|"power_capped": [0-9.]*' $OUT/profile_energy_k5_b256.txt | paste - - - - - -
