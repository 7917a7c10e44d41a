source .dev/setup.sh
timeout 400 python3 .dev/dw2.py 256 128 2>&1 | tee $OUT/dw2.txt | grep -v "^\s*$" | tail -60
