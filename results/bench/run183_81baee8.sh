source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export PYTHONPATH=$PWD/benches:$PYTHONPATH
mkdir -p $OUT/r
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
# the attention backward in one grid with 64-key dk/dv blocks (166 registers, no spills offline): energy a round side by side
timeout 300 python3 .dev/co_ab.py 3 400 base,bn64,co96_bn64,co128_bn64,co192_bn64 2>&1 | tee $OUT/r/co_ab_bn64_side_by_side.txt | grep -v Warning
cd $OUT && tar czf results.tgz r && rm -rf r
