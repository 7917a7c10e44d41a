# Session 44 review: kernels.autocast_operands in linear/mlp/head (no behaviour change): the CUDA tests of
# those modules and of pack independence, and profile_step's K = 5 losses at step 160 against run199's.
# Usage: bash .dev/run203.sh
mkdir -p $OUT/r /tmp/ps
source .dev/setup.sh
( timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_mlp.py tests/test_head.py tests/test_mlp_block.py tests/test_pack_independence.py tests/test_train.py -k "cuda or pack_independence or precompiled" 2>&1 | tail -4 ) | tee $OUT/r/pytest_cuda.txt
( cd benches && timeout 90 python3 profile_step.py --k 5 --b 256 --variants eager --out /tmp/ps ) > $OUT/r/profile_k5_b256.txt 2>&1
python3 - <<'PY' | tee $OUT/r/loss160_vs_run199.txt
import json, os
new = [json.loads(l) for l in open(os.environ["OUT"] + "/r/profile_k5_b256.txt") if l.startswith('{"variant"')][0]
old = [json.loads(l) for l in open("results/bench/profile_k5_b256_h200_ab198a8.txt") if l.startswith('{"variant"')][0]
print("loss_step160 equal to run199's bit for bit:", new["loss_step160"] == old["loss_step160"], new["loss_step160"], "ms", round(new["ms_per_step"], 3))
PY
cd $OUT && tar czf results.tgz r && rm -rf r
