# Session 47: why 10 tests failed in run217's whole-suite run on the device (as run there: PYPHASE_GIT_COMMIT and
# PYPHASE_DATA exported by setup; then with both unset), and the 18 tests run217's time limit cut off.
# Usage: bash .dev/run218.sh COMMIT SESSION KIND
mkdir -p $OUT/r
source .dev/setup.sh
export PYPHASE_GIT_COMMIT=$1; : "${3:?usage: run218.sh COMMIT SESSION KIND}"
F="tests/test_cli_results.py::test_real_trainer_output_end_to_end tests/test_coldstart.py::test_console_sets_up_the_cache tests/test_head.py::test_head_ce_matches_stock_in_the_interpreter tests/test_kernels.py::test_sum_parts_adds_every_partial_sum tests/test_layernorm.py::test_add_ln_matches_stock_in_the_interpreter tests/test_layernorm.py::test_embed_ln_matches_stock_in_the_interpreter tests/test_optim.py::test_fused_update_matches_torch_ops_in_the_interpreter tests/test_sweep.py::test_git_commit_is_the_checkout_head tests/test_sweep.py::test_smoke_sweep_writes_every_run_with_the_seed_columns"
( timeout 150 python3 -m pytest -q -p no:cacheprovider $F --tb=short 2>&1 | tail -150 ) > $OUT/r/failed_as_run217.txt
tail -15 $OUT/r/failed_as_run217.txt
( env -u PYPHASE_GIT_COMMIT -u PYPHASE_DATA timeout 150 python3 -m pytest -q -p no:cacheprovider $F --tb=line 2>&1 | tail -40 ) > $OUT/r/failed_env_unset.txt
tail -15 $OUT/r/failed_env_unset.txt
( timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_train.py -k "cuda_config_trains or together or lockstep or snapshot or seed_columns or queued or names_the_numerics or residual_default or unknown_residual or mixed_pack or compile or converged" --tb=short 2>&1 | tail -40 ) > $OUT/r/test_train_rest.txt
tail -5 $OUT/r/test_train_rest.txt
echo "wall $SECONDS s"
cd $OUT && tar czf results.tgz r && rm -rf r
