source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYTHONPATH=$PWD/benches:$PYTHONPATH
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 200 python3 benches/bench_train.py --device cuda --batches 32,256 --packs 7,5 --steps 100 2>&1 | tee $OUT/r/bench_train_gather_check.txt | grep -v Warning | tail -10
