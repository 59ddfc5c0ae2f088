// `dsv3 grads`: float32 gradients of the training loss for one token sequence, keyed by Hugging Face
// tensor names — the hook by which any other framework's autograd can check our backward pass.
#include <cmath>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "tool_common.h"
#include "train/train_model.h"
#include "train/train_step.h"

namespace dsv3::cli {

namespace {

struct GradsArgs {
  std::string model_dir, tokens, out, precision = "f32";
  double mtp_lambda = 0.0;
  double balance_alpha = 0.0;
};

template <typename T>
int run_grads(const GradsArgs& a, const std::vector<int32_t>& tokens) {
  TrainParams<T> params = load_train_params<T>(a.model_dir);
  const ModelConfig& config = params.config();
  TrainParams<T> grads(params.layout_ptr());
  TrainOptions o;
  o.mtp_lambda = a.mtp_lambda;
  o.mtp_depth = a.mtp_lambda > 0 ? -1 : 0;
  if (a.balance_alpha > 0) {
    o.moe.balance = BalanceLoss::sequence;
    o.moe.balance_alpha = a.balance_alpha;
  }
  const int64_t seq = int64_t(tokens.size()) - 1;
  const int64_t depth = resolve_mtp_depth(config, o);
  DSV3_CHECK(seq > depth, "[grads] ", tokens.size(), " tokens leave no position for ", depth,
             " MTP module(s); give at least ", depth + 2, " tokens");
  TrainActivations<T> acts(config, 1, seq, depth);
  const StepStats stats = train_forward_backward(params, grads, acts, tokens.data(), o);

  // Every tensor with a gradient: the main model's, and the MTP modules' when their loss is included.
  // Shared storage (MTP embedding/head copies) appears once, under the main model's name.
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  // Losses with every digit of a double, for checks at the float64 computation's accuracy.
  const auto exact_text = [](double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", v);
    return std::string(text);
  };
  writer.set_metadata("loss", exact_text(stats.loss));
  writer.set_metadata("main_loss", exact_text(stats.main_loss));
  std::string mtp_losses;  // one per MTP module, comma-separated
  for (double l : stats.mtp_loss) mtp_losses += (mtp_losses.empty() ? "" : ",") + exact_text(l);
  writer.set_metadata("mtp_loss", mtp_losses);
  writer.set_metadata("mtp_lambda", exact_text(a.mtp_lambda));
  writer.set_metadata("precision", a.precision);
  writer.set_metadata("tokens", a.tokens);
  int64_t written = 0;
  for (const ParamInfo& p : params.layout().tensors) {
    if (p.alias) continue;
    bool is_mtp = false;
    for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k)
      if (p.name.rfind(cat("model.layers.", config.num_hidden_layers + k, "."), 0) == 0) is_mtp = true;
    if (is_mtp && depth == 0) continue;
    Tensor t(DType::F32, p.shape);
    const T* src = grads.data() + p.offset;
    for (int64_t i = 0; i < p.numel; ++i) t.as<float>()[i] = float(src[i]);
    writer.add(p.name, std::move(t));
    ++written;
  }
  writer.write_file(a.out);
  std::printf("loss %.9g (main cross-entropy %.9g over %lld targets)\n", stats.loss, stats.main_loss,
              (long long)stats.tokens);
  std::fprintf(stderr, "[dsv3] wrote %lld gradient tensors (float32, %s compute) to %s\n", (long long)written,
               a.precision.c_str(), a.out.c_str());
  return 0;
}

}  // namespace

Runner add_grads(CLI::App& app) {
  auto a = std::make_shared<GradsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "grads", "Write float32 gradients of the mean next-token cross-entropy of a token sequence (positions "
               "0..n-2 predicting 1..n-1), keyed by Hugging Face tensor names, to a .safetensors file");
  cmd->add_option("--model", a->model_dir, "Model directory (config.json + safetensors; FP8 is dequantized)")
      ->required();
  cmd->add_option("--tokens", a->tokens, "Comma-separated token ids, at least 2, e.g. \"1,2,3\"")->required();
  cmd->add_option("--out", a->out, "Output .safetensors file")->required();
  cmd->add_option("--precision", a->precision, "Arithmetic of the computation (the output is float32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f64"}));
  cmd->add_option("--mtp-lambda", a->mtp_lambda,
                  "Add the MTP loss lambda/D * sum_k CE_k (default 0: main model only, MTP tensors omitted)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--balance-alpha", a->balance_alpha,
                  "Add the sequence-wise balance loss with this alpha (default 0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  return [a] {
    const std::vector<int32_t> tokens = parse_token_list(a->tokens);
    DSV3_CHECK(tokens.size() >= 2, "[grads] need at least 2 tokens (an input and its next-token target), got ",
               tokens.size());
    return a->precision == "f64" ? run_grads<double>(*a, tokens) : run_grads<float>(*a, tokens);
  };
}

}  // namespace dsv3::cli
