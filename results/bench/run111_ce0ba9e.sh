source .dev/setup.sh
export TRITON_CACHE_DIR=/tmp/tc_tests
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_skip_dead.py 2>&1 | tail -3 | tee $OUT/pytest_skip_dead.txt
