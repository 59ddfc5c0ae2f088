#!/usr/bin/env bash
# tests/run.sh (the README's and CI's test runner) against a small ctest project with known outcomes:
#   - variables set by the caller (DSV3_*, GTEST_FILTER, OMP_WAIT_POLICY, ...) do not reach the tests;
#   - a test skipped by exit code 77 or by GoogleTest's [  SKIPPED ] fails the run, and the failure names
#     the test and what it was missing;
#   - a selection that runs no test fails the run.
#   bash tests/harness/check_runner.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=../cli/lib/common.sh
source "$(dirname "$0")/../cli/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
make_work_dir check_runner
failures=0
RUN_COUNT_FAILURES=1

run "configure the check project" cmake -S "$src/tests/harness/project" -B "$WORK/project"
poison=(env DSV3_LOGITS_ATOL=1 DSV3_REFERENCE_ONLY=1 DSV3_NO_NATIVE_BF16=1 DSV3_NPM_DIR=/nowhere
        GTEST_FILTER=nothing PYTHONPATH=/nowhere OMP_WAIT_POLICY=active)

"${poison[@]}" bash "$src/tests/run.sh" "$WORK/project" >"$WORK/all.txt" 2>&1
rc=$?
check() {  # check LABEL CONDITION-COMMAND...
  local label=$1
  shift
  if "$@"; then echo "  ok   $label"; else
    echo "  FAIL $label"
    sed 's/^/       | /' "$WORK/all.txt" | tail -n 30
    failures=$((failures + 1))
  fi
}
check "a run with skipped tests exits non-zero" test "$rc" -ne 0
check "the exit-code skip is named with its reason" grep -q "skips_by_exit_code" "$WORK/all.txt"
check "its reason is shown" grep -q "needs the frobnicator" "$WORK/all.txt"
check "the GoogleTest-style skip is named with its reason" grep -q "missing widget.json" "$WORK/all.txt"
check "the caller's variables did not reach the tests" grep -q "clean_environment .*Passed" "$WORK/all.txt"

"${poison[@]}" bash "$src/tests/run.sh" "$WORK/project" -R clean_environment >"$WORK/all.txt" 2>&1
rc=$?
check "a run whose tests all pass exits 0" test "$rc" -eq 0

bash "$src/tests/run.sh" "$WORK/project" -R no_such_test >"$WORK/all.txt" 2>&1
rc=$?
check "a selection that runs no test exits non-zero" test "$rc" -ne 0

echo "check_runner: $failures failure(s)"
exit $((failures > 0))
