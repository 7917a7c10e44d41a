source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
V="eager,eager+PYPHASE_MLP_PIPE=1,eager+PYPHASE_DW_PIPE=s2,eager+PYPHASE_DW_PIPE=1,eager+PYPHASE_MLP_PIPE=1+PYPHASE_DW_PIPE=1,eager"
for B in 256 128; do
  timeout 240 python3 benches/profile_step.py --k 5 --b $B --variants $V --out /tmp/prof$B > $OUT/pipe_profile_k5_b$B.txt 2>&1
  grep -o '"variant": "[^"]*", .*"ms_per_step": [0-9.]*\|"loss_step160": \[[^]]*\]\|"_mlp_bwd_dw_kernel": \[[^]]*\]\]\|"_mlp_block_fwd_kernel": \[[^]]*\]\]\|per-step kernel ms.*' $OUT/pipe_profile_k5_b$B.txt | sed 's/"attn_fwd.*"ms_per_step"/ms/' 
done
timeout 200 python3 .dev/pipe_ab.py ",PYPHASE_MLP_PIPE=1,PYPHASE_MLP_PIPE=1+PYPHASE_DW_PIPE=1" > $OUT/pipe_side_by_side.txt 2>&1; cat $OUT/pipe_side_by_side.txt | tail -12
export TRITON_CACHE_DIR=/tmp/tc_tests
( PYPHASE_MLP_PIPE=1 PYPHASE_DW_PIPE=1 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py tests/test_mlp.py -k "cuda" 2>&1 | tail -4 ) | tee $OUT/pytest_pipe_cuda.txt
