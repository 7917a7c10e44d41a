# Session 47: the CLI tests on a single H200 after 4cd145c (click's usage errors as one line; the entry point now runs
# typer outside standalone mode, so the console's fast exit after a CUDA run is checked for real) and 80740fa.
# Usage: bash .dev/run221.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run221.sh COMMIT SESSION KIND}"
( timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cli_train.py tests/test_cli_predict.py tests/test_cli_data.py -rfEs 2>&1 | tail -12 ) | tee $OUT/r/pytest_cli.txt
python3 -m pyphase train smoke --device cuda --out /tmp/s --no-progress > /tmp/s.txt 2>&1; echo "console train smoke --device cuda: rc $?" | tee -a $OUT/r/pytest_cli.txt; tail -1 /tmp/s.txt | tee -a $OUT/r/pytest_cli.txt
python3 -m pyphase train smoke --device cuda --out /tmp/s --nosuch > /tmp/s2.txt 2>&1; echo "bad option: rc $? $(cat /tmp/s2.txt)" | tee -a $OUT/r/pytest_cli.txt
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
