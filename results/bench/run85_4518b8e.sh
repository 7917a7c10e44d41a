source .dev/setup.sh
F="64,64,4,2;64,64,4,4;128,64,8,3;64,32,4,3;128,128,8,2;32,64,4,3;64,64,8,3"
Bw="32,128,128,32,4,4;32,128,128,32,4,2;64,128,128,64,8,3;32,64,64,32,4,3;16,128,128,16,4,3;64,64,64,64,4,3;32,128,128,32,8,3"
for r in 1 2; do timeout 250 python3 benches/bench_attention.py --k 5 --b 256 --bias-in-qkv --fwd-configs "$F" --bwd-configs "$Bw" 2>&1 | grep -v Warning | tee -a $OUT/attn_sweep.txt; done
