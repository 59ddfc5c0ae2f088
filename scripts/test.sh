#!/usr/bin/env bash
# Quick start (2): set up and build if needed, then run the test suite (tests/run.sh: a clean
# environment, skipped tests fail the run).
#   scripts/test.sh                 all tests
#   scripts/test.sh -L unit         a subset (any ctest arguments)
# The browser tests (label `browser`) need Chromium and playwright-core, which setup.sh installs only when
# asked: they are asked for when ctest's selection for these arguments includes a browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
unset DSV3_SKIP_BUILD  # the tests run against a fresh build, always
bash scripts/setup.sh
if [[ ${DSV3_BROWSER_TESTS:-0} != 1 ]] && ctest --test-dir build -N --show-only=json-v1 "$@" 2>/dev/null |
  python3 -c '
import json, sys
tests = json.load(sys.stdin)["tests"]
sys.exit(0 if any("browser" in p["value"] for t in tests for p in t.get("properties", []) if p["name"] == "LABELS")
         else 1)' 2>/dev/null; then
  DSV3_BROWSER_TESTS=1 DSV3_SKIP_BUILD=1 bash scripts/setup.sh
fi
exec bash tests/run.sh build "$@"
