#!/usr/bin/env bash
# Quick start (2): set up and build if needed, then run the test suite (tests/run.sh: a clean
# environment, skipped tests fail the run).
#   scripts/test.sh                 all tests
#   scripts/test.sh -L unit         a subset (any ctest arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
unset DSV3_SKIP_BUILD  # the tests run against a fresh build, always
bash scripts/setup.sh
exec bash tests/run.sh build "$@"
