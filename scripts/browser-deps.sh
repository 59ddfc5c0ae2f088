#!/usr/bin/env bash
# Installs the npm half of what the browser tests (ctest label `browser`, tests/browser/*.sh) need, into
# deps/browser (git-ignored):
#   playwright-core   drives a browser over the DevTools protocol; it downloads no browser of its own,
#                     the tests launch Debian's Chromium (/usr/bin/chromium, the `chromium` package)
# scripts/setup.sh runs this, and installs `chromium`, only when DSV3_BROWSER_TESTS=1 (scripts/test.sh sets
# it when its selection includes a browser test). The version is pinned; a second run does nothing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${root}/deps/browser"
playwright_version="1.65.2"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "[browser-deps] node/npm not found; install Node.js (>= 18) to run the browser tests" >&2
  exit 1
fi

manifest="${prefix}/node_modules/playwright-core/package.json"
if [[ -f "${manifest}" &&
      "$(node -e 'process.stdout.write(require(process.argv[1]).version)' "${manifest}")" == "${playwright_version}" ]]; then
  echo "[browser-deps] already installed in ${prefix}"
  exit 0
fi

mkdir -p "${prefix}"
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core has no download step today; this keeps it that way.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "${prefix}" --save-exact --no-audit --no-fund \
  "playwright-core@${playwright_version}"
echo "[browser-deps] installed playwright-core@${playwright_version} into ${prefix}"
