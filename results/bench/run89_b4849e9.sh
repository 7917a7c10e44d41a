source .dev/setup.sh
C=$1
timeout 200 python3 benches/profile_step.py --k 5 --b 256 --out $OUT/prof --ops --variants eager 2>&1 | grep -E "^\{|rror|by group" | cut -c1-600 > $OUT/steps256.txt
timeout 150 python3 benches/profile_step.py --k 5 --b 128 --out $OUT/prof --variants eager 2>&1 | grep -E "^\{|rror|by group" | cut -c1-600 > $OUT/steps128.txt
cat $OUT/steps256.txt $OUT/steps128.txt
head -50 $OUT/prof/profile_eager_k5_b256.txt
