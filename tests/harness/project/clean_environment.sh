#!/usr/bin/env bash
# Exits 1 naming any variable that tests/run.sh should have cleared or set.
bad=$(compgen -e | grep -E '^(DSV3_|GTEST_|DNNL_|ONEDNN_|PYTHON)' || true)
if [[ -n $bad ]]; then echo "leaked into the test environment: $bad"; exit 1; fi
if [[ ${OMP_WAIT_POLICY:-} != passive ]]; then echo "OMP_WAIT_POLICY is '${OMP_WAIT_POLICY:-}', not passive"; exit 1; fi
echo "environment clean"
