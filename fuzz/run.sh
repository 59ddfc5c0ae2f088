#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into BUILD_DIR/fuzz and runs each from its seed
# corpus (fuzz/corpus/<target>, real request bodies) for RUNS inputs with memory bounds; a crash, leak,
# sanitizer report, or allocation over the bound fails the run and leaves the input in BUILD_DIR/fuzz.
#   fuzz/run.sh [BUILD_DIR=build] [RUNS=1000000]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-build}" && pwd)"
runs="${2:-1000000}"
out="${build}/fuzz"
mkdir -p "${out}"
command -v clang++ >/dev/null || { echo "[fuzz] clang++ not found: scripts/setup.sh installs clang and libclang-rt-14-dev" >&2; exit 1; }

pcre_flags=$(pkg-config --cflags --libs libpcre2-8)
# The request parser and what it calls (the tokenizer, for log-probability tokens).
sources=(src/serve/openai_api.cpp src/io/tokenizer.cpp src/io/utf8.cpp src/io/bpe.cpp src/io/pre_tokenizer.cpp)
binary="${out}/fuzz_openai_request"
if [[ ! -x "${binary}" || -n "$(find "${root}/src" "${root}/fuzz" -newer "${binary}" -name '*.[ch]*' -print -quit)" ]]; then
  echo "[fuzz] building ${binary}"
  (cd "${root}" && clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
     -Isrc fuzz/fuzz_openai_request.cpp "${sources[@]}" ${pcre_flags} -o "${binary}")
fi

corpus="${out}/corpus_openai_request"
mkdir -p "${corpus}"
cp -n "${root}"/fuzz/corpus/openai_request/* "${corpus}/"
echo "[fuzz] fuzz_openai_request: ${runs} inputs"
cd "${out}"
rc=0
"${binary}" -runs="${runs}" -max_len=8192 -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 \
  -print_final_stats=1 "${corpus}" > fuzz_openai_request.log 2>&1 || rc=$?
grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done " fuzz_openai_request.log || true
if ((rc != 0)); then
  echo "[fuzz] fuzz_openai_request found a problem (exit ${rc}); log: ${out}/fuzz_openai_request.log" >&2
  tail -40 fuzz_openai_request.log >&2
  exit 1
fi
echo "[fuzz] fuzz_openai_request: no crash, leak or limit hit in ${runs} inputs"
