// `dsv3 generate` and `dsv3 chat`.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "core/error.h"
#include "infer/chat_format.h"
#include "infer/generator.h"
#include "infer/reasoning.h"
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
  bool chat = false;          // --prompt is one user message, rendered with the chat template
  std::string chat_template;  // deepseek-v3 | deepseek-r1; empty: detected from tokenizer_config.json
  std::string reasoning_format = "deepseek";
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::string precision = "bf16";
  std::string system_prompt;
  bool mtp = false;
  int64_t draft_vocab = 0;
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
  cmd->add_flag("--mtp", a.mtp,
                "Speculative decoding: the checkpoint's MTP module drafts each next-but-one token and the model "
                "verifies it in the same forward (greedy output is unchanged; sampled output keeps the model's "
                "distribution); stderr reports the acceptance rate");
  cmd->add_option("--mtp-draft-vocab", a.draft_vocab,
                  "With --mtp: draft among the first N token ids only (the most frequent merges of a BPE "
                  "vocabulary), so the draft reads N rows of the output head; 0 = the whole vocabulary")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
}

// The chat options of generate (with --chat or --messages) and chat.
void add_chat_options(CLI::App* cmd, GenerateArgs& a) {
  cmd->add_option("--chat-template", a.chat_template,
                  "Chat format: deepseek-v3, or deepseek-r1 (the prompt opens <think>; earlier replies' reasoning "
                  "is dropped from the history). Default: detected from the model's tokenizer_config.json");
  cmd->add_option("--reasoning-format", a.reasoning_format,
                  "deepseek: the reply's reasoning (up to </think>) shown apart from its answer, dimmed on a "
                  "terminal, else between <think> and </think> lines; none: the reply as generated")
      ->capture_default_str();
}

// Bad names are refused before the model loads (exit status 1, naming the choices).
void check_chat_options(const GenerateArgs& a) {
  if (!a.chat_template.empty()) parse_chat_template(a.chat_template);
  parse_reasoning_format(a.reasoning_format);
}

// The --chat-template choice, or the template tokenizer_config.json's chat_template is recognised as;
// stderr says which and why.
ChatTemplate choose_chat_template(const GenerateArgs& a, const Tokenizer& tokenizer) {
  const bool given = !a.chat_template.empty();
  const ChatTemplate chat_template =
      given ? parse_chat_template(a.chat_template) : detect_chat_template(tokenizer.chat_template());
  std::fprintf(stderr, "[dsv3] chat template %s (%s)\n", chat_template_name(chat_template),
               given ? "--chat-template" : "detected from tokenizer_config.json");
  return chat_template;
}

// Prints a chat reply as it streams: its reasoning dimmed (ANSI faint) when stdout is a terminal, else
// between a "<think>" line and a "</think>" line; then, after a blank line, the answer.
class ReplyPrinter {
 public:
  ReplyPrinter() : terminal_(::isatty(::fileno(stdout)) == 1) {}
  void print(const ReasoningDelta& delta) {
    if (!delta.reasoning.empty()) {
      if (!in_reasoning_) std::fputs(terminal_ ? "\x1b[2m" : "<think>\n", stdout);
      in_reasoning_ = true;
      std::fputs(delta.reasoning.c_str(), stdout);
    }
    if (!delta.content.empty()) {
      if (in_reasoning_) std::fputs(terminal_ ? "\x1b[0m\n\n" : "\n</think>\n\n", stdout);
      in_reasoning_ = false;
      std::fputs(delta.content.c_str(), stdout);
    }
    std::fflush(stdout);
  }
  // An unclosed reasoning part stays unclosed in the text; on a terminal the dimming ends.
  void finish() {
    if (in_reasoning_ && terminal_) std::fputs("\x1b[0m", stdout);
    in_reasoning_ = false;
  }

 private:
  bool terminal_;
  bool in_reasoning_ = false;
};

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
  if (s.drafted_tokens > 0)
    std::fprintf(stderr, "[dsv3] MTP speculation: %lld of %lld drafts accepted (%.1f%%)\n",
                 (long long)s.accepted_tokens, (long long)s.drafted_tokens, 100.0 * s.acceptance_rate());
}

int run_generate(const GenerateArgs& a) {
  const LoadedModel loaded = load_model_with_tokenizer(a.model_dir);
  const Model& model = *loaded.model;
  const bool chat = a.chat || !a.messages_path.empty();
  std::vector<int32_t> prompt;
  ChatTemplate chat_template = ChatTemplate::deepseek_v3;
  if (chat) {
    // The conversation rendered as dsv3 chat renders it, ending in the assistant's turn.
    chat_template = choose_chat_template(a, *loaded.tokenizer);
    const std::vector<ChatMessage> messages =
        a.chat ? std::vector<ChatMessage>{{"user", a.prompt}} : read_chat_messages(a.messages_path);
    prompt = encode_chat(*loaded.tokenizer, messages, /*add_generation_prompt=*/true, chat_template);
  } else {
    if (const std::optional<int32_t> bos = prompt_bos_id(model.config, *loaded.tokenizer)) prompt.push_back(*bos);
    for (int32_t t : loaded.tokenizer->encode(a.prompt)) prompt.push_back(t);
  }

  KVCache cache(model.config, int64_t(prompt.size()) + a.max_new_tokens);
  Sampler sampler = make_sampler(a, *loaded.tokenizer);
  GenerationRequest request{prompt, a.max_new_tokens,
                            a.ignore_eos ? std::nullopt : stop_eos_id(model.config, *loaded.tokenizer), a.mtp,
                            a.draft_vocab};
  // A chat prints only the reply, as dsv3 chat prints it; a plain prompt is continued in place.
  TokenStreamDecoder stream(*loaded.tokenizer, /*skip_special=*/chat);
  ReasoningSplitter splitter(chat_template, chat ? parse_reasoning_format(a.reasoning_format) : ReasoningFormat::none);
  ReplyPrinter printer;
  if (!chat) printer.print({"", a.prompt});
  const GenerationStats stats = generate(model, cache, request, sampler, forward_options(a), [&](int32_t token) {
    if (request.eos_id && token == *request.eos_id) return true;
    printer.print(splitter.push(stream.push(token)));
    return true;
  });
  printer.print(splitter.push(stream.flush()));
  printer.print(splitter.finish());
  printer.finish();
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
  const ChatTemplate chat_template = choose_chat_template(a, tokenizer);
  const ReasoningFormat reasoning_format = parse_reasoning_format(a.reasoning_format);
  std::fprintf(stderr, "[dsv3] chat with %s — an empty line or Ctrl-D ends the session\n", a.model_dir.c_str());

  std::string line;
  while (true) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    messages.push_back({"user", line});
    const std::vector<int32_t> all = encode_chat(tokenizer, messages, /*add_generation_prompt=*/true, chat_template);
    size_t common = 0;
    while (common < cached.size() && common < all.size() && cached[common] == all[common]) ++common;
    if (common == all.size()) --common;  // always run at least one token to get logits
    DSV3_CHECK(int64_t(all.size()) + a.max_new_tokens <= context, "[chat] the conversation (", all.size(),
               " tokens) plus -n ", a.max_new_tokens, " exceeds the context of ", context,
               " tokens: start a new session");
    cache.truncate(int64_t(common));
    GenerationRequest request{std::vector<int32_t>(all.begin() + int64_t(common), all.end()), a.max_new_tokens, eos,
                              a.mtp, a.draft_vocab};
    // The reply leaves special tokens out, as DeepSeek's generate.py decodes it, on screen and in the
    // conversation; the conversation keeps only its answer, not its reasoning.
    TokenStreamDecoder stream(tokenizer, /*skip_special=*/true);
    ReasoningSplitter splitter(chat_template, reasoning_format);
    ReplyPrinter printer;
    std::string reply;
    std::vector<int32_t> reply_tokens;
    auto show = [&](const ReasoningDelta& delta) {
      reply += delta.content;
      printer.print(delta);
    };
    const GenerationStats stats = generate(model, cache, request, sampler, options, [&](int32_t token) {
      reply_tokens.push_back(token);
      if (request.eos_id && token == *request.eos_id) return true;
      show(splitter.push(stream.push(token)));
      return true;
    });
    show(splitter.push(stream.flush()));
    show(splitter.finish());
    printer.finish();
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
  CLI::Option* chat = cmd->add_flag("--chat", a->chat,
                                    "Send --prompt as one user message in the chat format; prints only the reply, "
                                    "as dsv3 chat does");
  chat->excludes(messages);
  add_chat_options(cmd, *a);
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past the end-of-sentence token");
  return [a, prompt, messages, chat, cmd] {
    DSV3_CHECK(prompt->count() + messages->count() == 1, "[generate] give --prompt TEXT or --messages FILE");
    DSV3_CHECK(chat->count() + messages->count() > 0 ||
                   cmd->get_option("--chat-template")->count() + cmd->get_option("--reasoning-format")->count() == 0,
               "[generate] --chat-template and --reasoning-format apply to a chat: add --chat or give --messages");
    check_chat_options(*a);
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
  add_chat_options(cmd, *a);
  return [a] {
    check_chat_options(*a);
    return run_chat(*a);
  };
}

}  // namespace dsv3::cli
