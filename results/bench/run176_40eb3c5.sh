source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# energy of switches that change only instructions or traffic (same values): GELU's division (+7 instructions an element in the MLP kernels),
# every attention tile masked (about twice the attention loops' ALU instructions), the MLP-half forward unfused (more DRAM traffic)
V="eager,eager+PYPHASE_GELU_RCP=div,eager+PYPHASE_ATTN_MASK=all,eager_unfused,eager,eager+PYPHASE_GELU_RCP=div,eager+PYPHASE_ATTN_MASK=all,eager_unfused,eager"
timeout 420 python3 benches/profile_step.py --k 5 --b 256 --variants $V --out /tmp/prof > $OUT/profile_energy_switches_k5_b256.txt 2>&1
grep -o '"variant": "[^"]*"\|"ms_per_step": [0-9.]*\|"joules_per_step": [0-9.]*\|"watts": [0-9.]*\|"sm_mhz": [0-9.]*\|"power_capped": [0-9.]*\|"loss_step160": \[[0-9.]*' $OUT/profile_energy_switches_k5_b256.txt | paste - - - - - - -
