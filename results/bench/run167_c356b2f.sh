source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
python3 -m pytest -q -x tests/test_attention.py -k "cuda or setting" 2>&1 | tail -3 | tee $OUT/pytest_attn.txt
V="eager,eager+PYPHASE_ATTN_BWD=two"
for c in 32,128,8,3 32,64,4,3 64,128,8,3 16,128,4,3 32,128,4,2 32,128,4,3,168 32,128,4,3,200 64,128,8,2; do V="$V,eager+PYPHASE_ATTN_BWD=one:${c//,/_}"; done
python3 benches/profile_step.py --data $PYPHASE_DATA --k 5 --b 256 --variants "$V,eager+PYPHASE_ATTN_BWD=two,eager" --out $OUT 2>&1 | grep -E '^\{|per-step' | tee $OUT/sweep_b256.txt | cut -c1-220
python3 benches/profile_step.py --data $PYPHASE_DATA --k 5 --b 128 --variants "eager,eager+PYPHASE_ATTN_BWD=two,eager+PYPHASE_ATTN_BWD=one:32_128_8_3,eager+PYPHASE_ATTN_BWD=one:32_64_4_3,eager+PYPHASE_ATTN_BWD=two,eager" --out $OUT 2>&1 | grep -E '^\{|per-step' | tee $OUT/sweep_b128.txt | cut -c1-220
ls $OUT
