# Session 47: the one test run219 failed (test_coldstart's console test, mended in 191d2fb), with the tests of the
# report fix, in the device's environment as run219 (PYPHASE_DATA and PYPHASE_GIT_COMMIT exported).
# Usage: bash .dev/run220.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run220.sh COMMIT SESSION KIND}"
( timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_coldstart.py tests/test_cli_results.py tests/test_report.py -rfE 2>&1 | tail -15 ) | tee $OUT/r/pytest_rerun.txt
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
