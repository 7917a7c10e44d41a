source .dev/setup.sh
S1="default;f:32,128,128,4,3;f:32,128,128,4,3@168;f:32,64,128,4,3;f:32,64,128,4,3@168;f:16,64,128,4,3;f:16,128,128,4,3;f:64,64,128,4,3;f:32,128,128,8,3;f:64,128,128,8,3;default"
S2="default;f:32,128,128,4,3;f:16,64,128,4,3;f:32,64,128,4,3@168;default"
timeout 500 python3 .dev/attn_fused_ab.py 256,128 "$S1" "$S2" 2>&1 | grep -E "^\{|rror|Error" | tee $OUT/ab.txt
