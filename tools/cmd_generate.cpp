// `dsv3 generate` and `dsv3 chat`.
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "core/error.h"
#include "infer/chat_format.h"
#include "infer/generator.h"
#include "infer/special_tokens.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "tool_common.h"

namespace dsv3::cli {

namespace {

struct GenerateArgs {
  std::string model_dir;
  std::string prompt;
  std::string messages_path;  // a conversation to continue instead of a prompt
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::string precision = "bf16";
  std::string system_prompt;
};

void add_sampling_options(CLI::App* cmd, GenerateArgs& a) {
  cmd->add_option("--model", a.model_dir, "Model directory (config.json, safetensors, tokenizer.json)")->required();
  cmd->add_option("-n,--max-new-tokens", a.max_new_tokens, "Tokens to generate at most")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temp", a.sampling.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-p", a.sampling.top_p, "Nucleus sampling mass in (0, 1]")->capture_default_str();
  cmd->add_option("--top-k", a.sampling.top_k, "Keep the k most likely tokens; 0 = all")->capture_default_str();
  cmd->add_option("--seed", a.sampling.seed, "Random seed for sampling")->capture_default_str();
  cmd->add_option("--precision", a.precision,
                  "Activation precision in matmuls: bf16 (fast), f32 (exact), or fp8 (quantized per 1x128 tile "
                  "for FP8 weights: DeepSeek's dynamic activation scheme)")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "f32", "fp8"}));
}

ForwardOptions forward_options(const GenerateArgs& a) {
  ForwardOptions options;
  options.precision = a.precision == "f32" ? Precision::f32 : a.precision == "fp8" ? Precision::fp8 : Precision::bf16;
  return options;
}

// Sampling never picks an id the tokenizer cannot decode (the model's vocab_size may be padded past it).
Sampler make_sampler(const GenerateArgs& a, const Tokenizer& tokenizer) {
  SamplingParams params = a.sampling;
  params.allowed_ids = tokenizer.decodable_ids();
  return Sampler(params);
}

void print_stats(const GenerationStats& s) {
  std::fprintf(stderr, "\n[dsv3] prompt %lld tokens: prefill %.1f tokens/s | generated %lld tokens: decode %.2f tokens/s%s\n",
               (long long)s.prompt_tokens, s.prefill_tokens_per_second(), (long long)s.generated_tokens,
               s.decode_tokens_per_second(), s.stopped_at_eos ? " (stopped at EOS)" : "");
}

int run_generate(const GenerateArgs& a) {
  const LoadedModel loaded = load_model_with_tokenizer(a.model_dir);
  const Model& model = *loaded.model;
  std::vector<int32_t> prompt;
  if (!a.messages_path.empty()) {
    // The conversation rendered as dsv3 chat renders it, ending in the assistant's turn.
    prompt = encode_chat(*loaded.tokenizer, read_chat_messages(a.messages_path), /*add_generation_prompt=*/true);
  } else {
    if (const std::optional<int32_t> bos = prompt_bos_id(model.config, *loaded.tokenizer)) prompt.push_back(*bos);
    for (int32_t t : loaded.tokenizer->encode(a.prompt)) prompt.push_back(t);
  }

  KVCache cache(model.config, int64_t(prompt.size()) + a.max_new_tokens);
  Sampler sampler = make_sampler(a, *loaded.tokenizer);
  GenerationRequest request{prompt, a.max_new_tokens,
                            a.ignore_eos ? std::nullopt : stop_eos_id(model.config, *loaded.tokenizer)};
  // With --messages only the reply is printed, as dsv3 chat prints it.
  TokenStreamDecoder stream(*loaded.tokenizer, /*skip_special=*/!a.messages_path.empty());
  std::fputs(a.prompt.c_str(), stdout);
  std::fflush(stdout);
  const GenerationStats stats = generate(model, cache, request, sampler, forward_options(a), [&](int32_t token) {
    if (request.eos_id && token == *request.eos_id) return true;
    std::fputs(stream.push(token).c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs(stream.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  print_stats(stats);
  return 0;
}

// Interactive chat in DeepSeek's format. The cache keeps the conversation: each turn re-encodes the
// whole conversation (as DeepSeek's generate.py does) and only the tokens past its longest common prefix
// with the cache are run — everything but the new message, unless the previous reply re-encodes to other
// tokens than were sampled. stderr reports both counts per turn.
int run_chat(const GenerateArgs& a) {
  const LoadedModel loaded = load_model_with_tokenizer(a.model_dir);
  const Model& model = *loaded.model;
  const Tokenizer& tokenizer = *loaded.tokenizer;
  const int64_t context = std::min<int64_t>(model.config.max_position_embeddings, 8192);
  KVCache cache(model.config, context);
  std::vector<int32_t> cached;  // tokens whose latents the cache holds
  std::vector<ChatMessage> messages;
  if (!a.system_prompt.empty()) messages.push_back({"system", a.system_prompt});
  Sampler sampler = make_sampler(a, tokenizer);
  const std::optional<int32_t> eos = stop_eos_id(model.config, tokenizer);
  const ForwardOptions options = forward_options(a);
  std::fprintf(stderr, "[dsv3] chat with %s — an empty line or Ctrl-D ends the session\n", a.model_dir.c_str());

  std::string line;
  while (true) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    messages.push_back({"user", line});
    const std::vector<int32_t> all = encode_chat(tokenizer, messages, /*add_generation_prompt=*/true);
    size_t common = 0;
    while (common < cached.size() && common < all.size() && cached[common] == all[common]) ++common;
    if (common == all.size()) --common;  // always run at least one token to get logits
    DSV3_CHECK(int64_t(all.size()) + a.max_new_tokens <= context, "[chat] the conversation (", all.size(),
               " tokens) plus -n ", a.max_new_tokens, " exceeds the context of ", context,
               " tokens: start a new session");
    cache.truncate(int64_t(common));
    GenerationRequest request{std::vector<int32_t>(all.begin() + int64_t(common), all.end()), a.max_new_tokens, eos};
    // The reply leaves special tokens out, as DeepSeek's generate.py decodes it, on screen and in the
    // conversation.
    TokenStreamDecoder stream(tokenizer, /*skip_special=*/true);
    std::string reply;
    std::vector<int32_t> reply_tokens;
    const GenerationStats stats = generate(model, cache, request, sampler, options, [&](int32_t token) {
      reply_tokens.push_back(token);
      if (request.eos_id && token == *request.eos_id) return true;
      const std::string piece = stream.push(token);
      reply += piece;
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
      return true;
    });
    const std::string tail = stream.flush();
    reply += tail;
    std::fputs(tail.c_str(), stdout);
    std::fputs("\n", stdout);
    print_stats(stats);
    std::fprintf(stderr, "[dsv3] conversation %zu tokens: %zu reused from the cache, %zu prefilled\n", all.size(),
                 common, all.size() - common);
    cached = all;
    cached.insert(cached.end(), reply_tokens.begin(), reply_tokens.end() - (reply_tokens.empty() ? 0 : 1));
    messages.push_back({"assistant", reply});
  }
  return 0;
}

}  // namespace

Runner add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt; prints prefill/decode tokens/s to stderr");
  add_sampling_options(cmd, *a);
  CLI::Option* prompt = cmd->add_option("--prompt", a->prompt, "Prompt text (BOS is prepended)");
  CLI::Option* messages = cmd->add_option(
      "--messages", a->messages_path,
      "Instead of --prompt: a JSON file [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": TEXT}, "
      "...], rendered in DeepSeek's chat format as dsv3 chat renders it; prints only the reply, as dsv3 chat does");
  prompt->excludes(messages);
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past the end-of-sentence token");
  return [a, prompt, messages] {
    DSV3_CHECK(prompt->count() + messages->count() == 1, "[generate] give --prompt TEXT or --messages FILE");
    return run_generate(*a);
  };
}

Runner add_chat(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  a->max_new_tokens = 512;
  a->sampling.temperature = 0.7f;
  a->sampling.top_p = 0.95f;
  CLI::App* cmd = app.add_subcommand(
      "chat", "Interactive chat in DeepSeek's chat format (one message a line on stdin); the latent KV cache is kept "
              "across turns, and stderr says per turn how many tokens it supplied and how many were prefilled");
  add_sampling_options(cmd, *a);
  cmd->add_option("--system", a->system_prompt, "System prompt");
  return [a] { return run_chat(*a); };
}

}  // namespace dsv3::cli
