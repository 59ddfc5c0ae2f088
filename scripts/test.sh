#!/usr/bin/env bash
# Quick start (2): set up and build if needed, then run the test suite.
#   scripts/test.sh                 all tests
#   DSV3_TEST_ARGS="-L unit" scripts/test.sh   a subset (ctest arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" ${DSV3_TEST_ARGS:-}
