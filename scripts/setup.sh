#!/usr/bin/env bash
# Installs what dsv3 needs and is missing (Debian 12 packages, then npm assets), then builds.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#   scripts/setup.sh            install + build (Release) into build/
#   DSV3_SKIP_BUILD=1 scripts/setup.sh   install only
#   DSV3_BROWSER_TESTS=1 scripts/setup.sh   also what the browser tests need (ctest label `browser`):
#                                         Debian's chromium and playwright-core (scripts/browser-deps.sh);
#                                         scripts/test.sh sets it when its selection includes a browser test
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev libhwy-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libgtest-dev libcairo2-dev libcpp-httplib-dev
  python3 python3-numpy clang libclang-rt-14-dev libopenmpi-dev openmpi-bin
)
# Node.js and npm may come from elsewhere than Debian (e.g. a NodeSource nodejs package bundles npm and
# conflicts with Debian's npm): only install Debian's when the commands are missing.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
browser_tests=${DSV3_BROWSER_TESTS:-0}
if [[ $browser_tests == 1 ]]; then packages+=(chromium); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "[setup] need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
else
  echo "[setup] Debian packages: all present"
fi

bash scripts/npm-deps.sh
if [[ $browser_tests == 1 ]]; then bash scripts/browser-deps.sh; fi

if [[ "${DSV3_SKIP_BUILD:-0}" != 1 ]]; then
  echo "[setup] building into build/"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
