#!/usr/bin/env bash
# Quick start (2): set up and build if needed, then run the test suite.
#   scripts/test.sh                 all tests
#   DSV3_TEST_ARGS="-L unit" scripts/test.sh   a subset (ctest arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Tests run two at a time on 2 cores: threads that spin while waiting would starve the other test.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ctest --test-dir build --output-on-failure -j"$(nproc)" ${DSV3_TEST_ARGS:-}
