source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_skip_dead.py tests/test_stream_grad.py tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -6 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
for m in none whole; do ( PYPHASE_COMPILE=$m timeout 200 python3 -m pyphase train smoke --device cuda --out /root/smoke_$m --no-progress --json ) > $OUT/smoke_$m.json 2> $OUT/smoke_$m.err; echo "compile=$m rc=$?"; tail -3 $OUT/smoke_$m.err; done
python3 - <<'PY'
import json, os
o = os.environ["OUT"]
a, b = (json.load(open(f"{o}/smoke_{m}.json")) for m in ("none", "whole"))
ka = {(r["batch_size"], r["lr"], r.get("gradient_clip")): r for r in a}
for r in b:
    x = ka[(r["batch_size"], r["lr"], r.get("gradient_clip"))]
    print(r["batch_size"], r["lr"], r.get("gradient_clip"), "none:", round(x["final_val_loss"], 5), x["numerics"], "| whole:", round(r["final_val_loss"], 5), r["numerics"])
PY
