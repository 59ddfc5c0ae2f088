#!/usr/bin/env bash
# Runs the test suite of a build directory the way CI does:
#   bash tests/run.sh BUILD_DIR [ctest arguments...]      e.g. bash tests/run.sh build -L unit
#
# - The environment cannot weaken it: every variable that changes what dsv3, oneDNN, OpenMP, GoogleTest,
#   ctest, Python or Node compute or check (DSV3_*, OMP_*, DNNL_*, GTEST_*, PYTHON*, ...) is cleared
#   first, whatever the caller set. Tests that need a setting set it themselves.
# - A skipped test fails the run, naming the test and what its output says is missing; so does a
#   selection that runs no test (ctest --no-tests=error).
# tests/harness/check_runner.sh checks all three against a small ctest project.
set -uo pipefail
build=${1:?usage: tests/run.sh BUILD_DIR [ctest arguments...]}
shift

while IFS= read -r name; do
  case $name in
    DSV3_* | OMP_* | GOMP_* | KMP_* | DNNL_* | ONEDNN_* | MKL_* | OPENBLAS_* | HWY_* | GTEST_* | CTEST_* | \
      PYTHON* | NODE_* | NPM_CONFIG_* | npm_config_* | LD_PRELOAD | LD_LIBRARY_PATH)
      unset "$name" ;;
  esac
done < <(compgen -e)
# Tests run two at a time on 2 cores: threads that spin while waiting would starve the other test.
export OMP_WAIT_POLICY=passive

log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest --test-dir "$build" --output-on-failure --no-tests=error -j"$(nproc)" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# ctest lists tests that did not run after "The following tests did not run:", one per line:
#   "	 12 - Suite.Name (Skipped)". A skip is a check that did not happen: fail, and show why it skipped.
skipped=$(sed -n '/The following tests did not run:/,/^$/p' "$log" | grep -E '^\s+[0-9]+ - ' |
  sed -E 's/^\s+[0-9]+ - (.*) \((.*)\)$/\1|\2/')
if [[ -n $skipped ]]; then
  echo
  echo "FAIL: tests did not run; a skipped test counts as a failure:"
  last_test_log="$build/Testing/Temporary/LastTest.log"
  while IFS='|' read -r test why; do
    echo "  $test ($why)"
    if [[ -f $last_test_log ]]; then
      # The test's own output names what it was missing.
      awk -v t="$test" '$0 ~ ("Testing: " t "$") {on = 1} on && /^<end of output>/ {exit} on' "$last_test_log" |
        sed -n '/^Output:/,$p' | grep -v -E '^(Output:|-+)$' | tail -n 6 | sed 's/^/      | /'
    fi
  done <<<"$skipped"
  exit 1
fi
exit "$rc"
