source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
( export TRITON_CACHE_DIR=/tmp/tc_tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_mlp_block.py tests/test_kernels.py tests/test_train.py -k "cuda or precompiled" 2>&1 | tail -15 > $OUT/pytest_cuda.txt ); tail -3 $OUT/pytest_cuda.txt
P="python3 benches/profile_step.py --k 5 --out /tmp/prof"
for B in 256; do
  timeout 60 $P --b $B --variants eager_unfused,eager 2>&1 | grep -E "^\{" 
  for C in mlp/1,1,0 mlp/1,0,1 mlp/0,1,1 64,32,8,2 128,32,8,2 64,32,4,1 128,64,8,2 64,64,4,2 128,32,8,2/1,1,0 128,32,4,2/1,0,1 64,32,8,2/1,0,1 128,32,8,2/0,1,1; do
    timeout 45 $P --b $B --variants eager --block-config $C 2>&1 | grep -E "^\{|rror" | head -3
  done
  timeout 45 $P --b $B --variants eager_unfused 2>&1 | grep -E "^\{"
done > $OUT/sweep.txt 2>&1
cut -c1-60,100-130,190-400 $OUT/sweep.txt
