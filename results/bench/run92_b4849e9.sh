source .dev/setup.sh
timeout 400 python3 .dev/multistep.py 2>&1 | tee $OUT/multistep.txt | grep -v "^\s*$" | tail -30
