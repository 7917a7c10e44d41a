source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1
export TRITON_CACHE_DIR=/tmp/tc_tests
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_linear.py tests/test_attention.py tests/test_mlp_block.py tests/test_train.py tests/test_sweep.py tests/test_optim.py tests/test_kernels.py tests/test_head.py tests/test_layernorm.py tests/test_mlp.py -k "cuda or precompiled" 2>&1 | tail -4 ) | tee $OUT/pytest_cuda.txt
unset TRITON_CACHE_DIR
timeout 150 python3 benches/profile_step.py --k 5 --b 256 --out /tmp/prof --variants eager,eager+PYPHASE_LINEAR=torch,eager,eager+PYPHASE_LINEAR=torch 2>&1 | grep -E "^\{|rror" > $OUT/steps.txt
cat > /tmp/summ.py <<'PY'
import json, os
for l in open(os.environ["OUT"] + "/steps.txt"):
    if not l.startswith("{"):
        print(l.strip()[:300]); continue
    r = json.loads(l)
    print(r["B"], r["variant"], round(r["ms_per_step"], 3), json.dumps(r.get("regs_spills")), [round(x, 4) for x in r["loss_step160"]])
PY
python3 /tmp/summ.py | tee $OUT/steps_summary.txt
