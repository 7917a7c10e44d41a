source .dev/setup.sh
cp pyphase/_core*.so .dev/old/pyphase/
for r in 1 2; do
for v in new old; do
if [ $v = old ]; then D=.dev/old; else D=.; fi
( cd $D && PYTHONPATH=$PWD:/tmp/site timeout 100 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof_$v --variants eager 2>&1 | grep -E "^\{|rror" | cut -c1-330 | sed "s/^/$v /" ) | tee -a $OUT/ab.txt
done; done
