# shellcheck shell=bash
# Helpers shared by the tests/cli scripts. Sourced, not run:
#   source "$(dirname "$0")/lib/common.sh"
# It sits in lib/ so that CMake's tests/cli/*.sh glob does not register it as a test.
#
#   find_numpy_python NAME   sets PY to a Python 3 that imports numpy, or prints FAIL and exits 1
#   require_dsv3 PATH        exits 1 with a FAIL line unless PATH is an executable file
#   make_work_dir NAME       sets WORK to a new temp dir under $BUILD_DIR, removed on exit
#   run LABEL COMMAND...     runs a step with its output in $WORK/log.txt, prints ok or FAIL
#   expect_error LABEL PATTERN COMMAND...
#                            the command must exit 1 (an error, not a crash) with PATTERN on stderr;
#                            prints ok or FAIL and adds 1 to $failures on FAIL
#   check LABEL SUBCOMMAND ARGS...
#                            runs cli_checks.py (beside this file: content checks of the CLI's outputs against
#                            what they must hold) as a step of run, printing its report; needs $PY
#   check_logits MODEL TOKENS PREFIX VOCAB
#                            dsv3 logits of TOKENS ("1,2,3") with absorbed and naive attention and of its PREFIX
#                            tokens; checks the first is a float32 [n, VOCAB] .npy the others agree with
#   expect_in_log LABEL PATTERN
#                            the last step's log ($WORK/log.txt) must match the grep pattern PATTERN; prints
#                            ok with the matching line, or FAIL and adds 1 to $failures
#   small_training_data     writes $WORK/config.json (a 2-layer MoE model with an MTP module, vocabulary
#                            320) and $WORK/shards (the project's docs tokenized by a tokenizer trained on
#                            them, in $WORK/tok); needs $dsv3 and $src; returns 1 if a step fails
#   init_config_case NAME CONFIG FLAGS
#                            prints a case header and writes a random checkpoint of the reference config
#                            CONFIG with `dsv3 init` into $WORK/NAME; adds 1 to $failures on failure
#
# run's behaviour is set by these variables (all off by default):
#   RUN_ELAPSED=1        append the step's elapsed seconds to its ok line
#   RUN_PRINT_LOG=1      print the log, indented, after the ok line
#   RUN_LOG_DROP=REGEX   with RUN_PRINT_LOG, leave out log lines matching this grep pattern
#   RUN_COUNT_FAILURES=1 add 1 to $failures for each failed step

# find_numpy_python NAME: sets PY to the first of /usr/bin/python3, python3 that imports numpy; without
# one prints a FAIL line naming the test NAME and what is missing, and exits 1. (Never a skip: a reference
# check that silently does not run would let the suite pass unchecked.)
# shellcheck disable=SC2034  # PY is read by the sourcing script
find_numpy_python() {
  local name=$1 candidate
  PY=""
  for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import numpy' >/dev/null 2>&1; then
      PY=$candidate
      return 0
    fi
  done
  echo "FAIL: $name needs a Python 3 with numpy (tried /usr/bin/python3, python3);"
  echo "      install it with: apt-get install python3-numpy (scripts/setup.sh does)"
  exit 1
}

# require_dsv3 PATH: exits 1 with a FAIL line unless PATH (the built dsv3 binary) is executable.
require_dsv3() {
  if [ ! -x "$1" ]; then
    echo "FAIL step 'find dsv3': $1 does not exist or is not executable (build the 'dsv3' target first)"
    exit 1
  fi
}

# make_work_dir NAME: sets WORK to a new directory $BUILD_DIR/NAME.XXXXXX and removes it when the script
# exits; exits 1 with a FAIL line if it cannot be made.
make_work_dir() {
  WORK=$(mktemp -d "$BUILD_DIR/$1.XXXXXX") || { echo "FAIL step 'mktemp' under $BUILD_DIR"; exit 1; }
  trap 'rm -rf "$WORK"' EXIT
}

# run LABEL COMMAND...: runs the command with its output in $WORK/log.txt. On success prints an ok line
# (see RUN_ELAPSED, RUN_PRINT_LOG, RUN_LOG_DROP above) and returns 0; on failure prints which step
# failed, the command and the last 25 lines of the log, counts it if RUN_COUNT_FAILURES=1, and returns 1.
run() {
  local label=$1
  shift
  local log="$WORK/log.txt"
  local start=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    if [ "${RUN_ELAPSED:-0}" = 1 ]; then
      echo "  ok   $label ($((SECONDS - start)) s)"
    else
      echo "  ok   $label"
    fi
    if [ "${RUN_PRINT_LOG:-0}" = 1 ]; then
      if [ -n "${RUN_LOG_DROP:-}" ]; then
        grep -v -- "$RUN_LOG_DROP" "$log" | sed 's/^/       | /'
      else
        sed 's/^/       | /' "$log"
      fi
    fi
    return 0
  fi
  echo "  FAIL step '$label' (exit $rc): $*"
  tail -n 25 "$log" | sed 's/^/       | /'
  if [ "${RUN_COUNT_FAILURES:-0}" = 1 ]; then
    failures=$((failures + 1))
  fi
  return 1
}

# expect_error LABEL PATTERN COMMAND...: see above.
expect_error() {
  local label=$1 pattern=$2
  shift 2
  "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [[ $rc -eq 1 ]] && grep -q -- "$pattern" "$WORK/err"; then
    echo "  ok   $label"
  else
    echo "  FAIL $label (exit $rc, stderr: $(head -c 300 "$WORK/err"))"
    failures=$((failures + 1))
  fi
}

CLI_CHECKS=$(dirname "${BASH_SOURCE[0]}")/cli_checks.py

# check LABEL SUBCOMMAND ARGS...: see above.
check() {
  local label=$1
  shift
  RUN_PRINT_LOG=1 run "$label" "$PY" "$CLI_CHECKS" "$@"
}

# expect_in_log LABEL PATTERN: see above.
expect_in_log() {
  local line
  if line=$(grep -m 1 -- "$2" "$WORK/log.txt"); then
    echo "  ok   $1: $line"
  else
    echo "  FAIL $1: no line matching '$2' in:"
    tail -n 25 "$WORK/log.txt" | sed 's/^/       | /'
    failures=$((failures + 1))
  fi
}

# check_logits MODEL TOKENS PREFIX VOCAB: see above (needs $dsv3, the binary).
check_logits() {
  local model=$1 tokens=$2 prefix=$3 vocab=$4 rows
  rows=$(tr ',' '\n' <<<"$tokens" | wc -l)
  run "logits" "$dsv3" logits --model "$model" --tokens "$tokens" --out "$WORK/absorbed.npy" &&
    run "logits, naive attention" "$dsv3" logits --model "$model" --tokens "$tokens" --attention naive \
      --out "$WORK/naive.npy" &&
    run "logits of the prefix $prefix" "$dsv3" logits --model "$model" --tokens "$prefix" --out "$WORK/prefix.npy" &&
    check "logits [$rows, $vocab] agree across attention forms and with the prefix" logits "$WORK/absorbed.npy" \
      --rows "$rows" --vocab "$vocab" --same "$WORK/naive.npy" "$WORK/prefix.npy"
}
# init_config_case NAME CONFIG FLAGS: prints "== NAME (CONFIG, FLAGS)" and runs `$DSV3 init` on
# $REF/configs/CONFIG with seed $SEED, no tokenizer (the test configs have 1000 ids) and the extra init
# FLAGS (one string, split on spaces) into $WORK/NAME. Returns 0, or 1 after adding 1 to $failures.
init_config_case() {
  local name=$1 config=$2 flags=$3 flag_words
  echo "== $name ($config${flags:+, $flags})"
  read -r -a flag_words <<<"$flags"
  if ! run "$name: dsv3 init" "$DSV3" init --config "$REF/configs/$config" --out "$WORK/$name" --seed "$SEED" \
    --no-tokenizer "${flag_words[@]}"; then
    failures=$((failures + 1))
    return 1
  fi
}

# small_training_data: see above.
small_training_data() {
  cat "$src"/README.md "$src"/docs/*.md >"$WORK/corpus.txt"
  cat >"$WORK/config.json" <<'JSON'
{"model_type": "deepseek_v3", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 96,
 "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
 "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
 "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "n_group": 4, "topk_group": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
 "norm_topk_prob": true, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
  run "train-tokenizer" "$dsv3" train-tokenizer --input "$WORK/corpus.txt" --vocab-size 320 \
    --out "$WORK/tok/tokenizer.json" --quiet || return 1
  run "data" "$dsv3" data --tokenizer "$WORK/tok/tokenizer.json" --input "$WORK/corpus.txt" --doc-separator $'\n\n' \
    --val-fraction 0.2 --out "$WORK/shards" --quiet
}
