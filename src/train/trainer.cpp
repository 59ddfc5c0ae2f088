#include "train/trainer.h"

#include <algorithm>
#include <map>
#include <optional>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/parallel.h"
#include "core/trace.h"
#include "dist/comm.h"
#include "dist/expert_parallel.h"
#include "dist/pipeline_train.h"
#include "dist/zero1.h"
#include "train/token_shards.h"
#include "train/training_data.h"

namespace dsv3 {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- options ----

const char* balance_mode_name(BalanceMode mode) {
  switch (mode) {
    case BalanceMode::aux_free: return "aux-free";
    case BalanceMode::aux_loss: return "aux-loss";
    case BalanceMode::none: return "none";
  }
  return "?";
}

BalanceMode parse_balance_mode(const std::string& name) {
  for (BalanceMode m : {BalanceMode::aux_free, BalanceMode::aux_loss, BalanceMode::none})
    if (name == balance_mode_name(m)) return m;
  DSV3_FAIL("[train] unknown balancing mode '", name, "'; use aux-free, aux-loss or none");
}

json TrainRunOptions::to_json() const {
  json j;
  j["preset"] = preset;
  j["model"] = json::parse(model_config_to_json(config));
  j["precision"] = compute_precision_name(precision);
  j["batch_size"] = batch_size;
  j["seq_len"] = seq_len;
  j["grad_accum"] = grad_accum;
  j["steps"] = steps;
  j["seed"] = seed;
  j["lr"] = {{"peak", schedule.peak},
             {"final", schedule.final_lr},
             {"warmup_steps", schedule.warmup_steps},
             {"decay_start", schedule.decay_start},
             {"decay_end", schedule.decay_end}};
  j["adamw"] = {{"beta1", adamw.beta1},
                {"beta2", adamw.beta2},
                {"eps", adamw.eps},
                {"weight_decay", adamw.weight_decay},
                {"clip_norm", adamw.clip_norm},
                {"moments", adamw.moments == MomentDtype::bf16 ? "bf16" : "f32"}};
  j["init_std"] = init_std;
  j["balance"] = balance_mode_name(balance);
  j["bias_gamma"] = bias_gamma;
  j["balance_alpha"] = balance_alpha;
  j["mtp_depth"] = mtp_depth;
  j["mtp_lambda"] = mtp_lambda;
  j["eval_every"] = eval_every;
  j["eval_sequences"] = eval_sequences;
  j["save_every"] = save_every;
  return j;
}

namespace {

const json& field(const json& j, const char* key, const std::string& where) {
  DSV3_CHECK(j.is_object() && j.contains(key), "[train] ", where, ": missing field \"", key, "\"");
  return j.at(key);
}

template <typename T>
T number(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  DSV3_CHECK(v.is_number(), "[train] ", where, ": field \"", key, "\" must be a number, got ", v.dump());
  return v.get<T>();
}

std::string text(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  DSV3_CHECK(v.is_string(), "[train] ", where, ": field \"", key, "\" must be a string, got ", v.dump());
  return v.get<std::string>();
}

}  // namespace

TrainRunOptions TrainRunOptions::from_json(const json& j, const std::string& where) {
  TrainRunOptions o;
  o.preset = text(j, "preset", where);
  o.config = parse_model_config(field(j, "model", where).dump(), where + " (model)");
  o.precision = parse_compute_precision(text(j, "precision", where));
  o.batch_size = number<int64_t>(j, "batch_size", where);
  o.seq_len = number<int64_t>(j, "seq_len", where);
  o.grad_accum = number<int64_t>(j, "grad_accum", where);
  o.steps = number<int64_t>(j, "steps", where);
  o.seed = number<uint64_t>(j, "seed", where);
  const json& lr = field(j, "lr", where);
  o.schedule.peak = number<double>(lr, "peak", where + " (lr)");
  o.schedule.final_lr = number<double>(lr, "final", where + " (lr)");
  o.schedule.warmup_steps = number<int64_t>(lr, "warmup_steps", where + " (lr)");
  o.schedule.decay_start = number<int64_t>(lr, "decay_start", where + " (lr)");
  o.schedule.decay_end = number<int64_t>(lr, "decay_end", where + " (lr)");
  const json& a = field(j, "adamw", where);
  o.adamw.beta1 = number<double>(a, "beta1", where + " (adamw)");
  o.adamw.beta2 = number<double>(a, "beta2", where + " (adamw)");
  o.adamw.eps = number<double>(a, "eps", where + " (adamw)");
  o.adamw.weight_decay = number<double>(a, "weight_decay", where + " (adamw)");
  o.adamw.clip_norm = number<double>(a, "clip_norm", where + " (adamw)");
  const std::string moments = text(a, "moments", where + " (adamw)");
  DSV3_CHECK(moments == "f32" || moments == "bf16", "[train] ", where, ": adamw.moments must be f32 or bf16, got ",
             moments);
  o.adamw.moments = moments == "bf16" ? MomentDtype::bf16 : MomentDtype::f32;
  o.init_std = number<double>(j, "init_std", where);
  o.balance = parse_balance_mode(text(j, "balance", where));
  o.bias_gamma = number<double>(j, "bias_gamma", where);
  o.balance_alpha = number<double>(j, "balance_alpha", where);
  o.mtp_depth = number<int64_t>(j, "mtp_depth", where);
  o.mtp_lambda = number<double>(j, "mtp_lambda", where);
  o.eval_every = number<int64_t>(j, "eval_every", where);
  o.eval_sequences = number<int64_t>(j, "eval_sequences", where);
  o.save_every = number<int64_t>(j, "save_every", where);
  o.validate();
  return o;
}

void TrainRunOptions::validate() const {
  parse_model_config(model_config_to_json(config), "the model config");  // validates every field
  DSV3_CHECK(batch_size >= 1, "[train] batch size must be >= 1, got ", batch_size);
  DSV3_CHECK(seq_len >= 2, "[train] sequence length must be >= 2, got ", seq_len);
  DSV3_CHECK(seq_len <= config.max_position_embeddings, "[train] sequence length ", seq_len,
             " exceeds the model's max_position_embeddings ", config.max_position_embeddings);
  DSV3_CHECK(grad_accum >= 1, "[train] gradient accumulation must be >= 1 micro-batch, got ", grad_accum);
  DSV3_CHECK(steps >= 1, "[train] steps must be >= 1, got ", steps);
  schedule.validate();
  DSV3_CHECK(init_std > 0, "[train] init std must be > 0, got ", init_std);
  DSV3_CHECK(bias_gamma >= 0, "[train] bias update speed gamma must be >= 0, got ", bias_gamma);
  DSV3_CHECK(balance_alpha >= 0, "[train] balance loss alpha must be >= 0, got ", balance_alpha);
  DSV3_CHECK(mtp_lambda >= 0, "[train] MTP loss weight lambda must be >= 0, got ", mtp_lambda);
  DSV3_CHECK(eval_every >= 0 && eval_sequences >= 1 && save_every >= 0,
             "[train] eval-every and save-every must be >= 0 and eval-sequences >= 1");
  DSV3_CHECK(eval_sequences >= batch_size, "[train] --eval-sequences ", eval_sequences, " is fewer than one batch of ",
             batch_size, " sequences: evaluation runs whole batches, so give at least ", batch_size);
  if (balance == BalanceMode::aux_free && bias_gamma > 0)
    DSV3_CHECK(config.topk_method == TopkMethod::noaux_tc, "[train] auxiliary-loss-free balancing updates the "
               "routers' correction bias, which only exists with topk_method noaux_tc; use --balance aux-loss or none");
  TrainOptions t;
  t.mtp_depth = mtp_depth;
  const int64_t depth = resolve_mtp_depth(config, t);
  DSV3_CHECK(seq_len > depth, "[train] sequence length ", seq_len, " leaves no positions for MTP depth ", depth);
}

TrainOptions TrainRunOptions::step_options() const {
  TrainOptions t;
  t.precision = precision;
  t.mtp_depth = mtp_depth;
  t.mtp_lambda = mtp_lambda;
  t.moe.balance_alpha = balance_alpha;
  switch (balance) {
    case BalanceMode::aux_free: t.moe.balance = balance_alpha > 0 ? BalanceLoss::sequence : BalanceLoss::none; break;
    case BalanceMode::aux_loss: t.moe.balance = balance_alpha > 0 ? BalanceLoss::batch : BalanceLoss::none; break;
    case BalanceMode::none: t.moe.balance = BalanceLoss::none; break;
  }
  return t;
}

json StepRecord::to_json() const {
  json j;
  j["step"] = step;
  j["tokens"] = tokens;
  j["loss"] = loss;
  j["main_loss"] = main_loss;
  j["balance_loss"] = balance_loss;
  j["mtp_loss"] = mtp_loss;
  j["lr"] = lr;
  j["grad_norm"] = grad_norm;
  j["tokens_per_s"] = tokens_per_s;
  j["elapsed_s"] = elapsed_s;
  j["max_vio"] = max_vio;
  j["max_vio_layers"] = max_vio_layers;
  j["moe_layers"] = moe_layers;
  j["expert_load"] = expert_load;
  if (val_loss) j["val_loss"] = *val_loss;
  return j;
}

// ---- the trainer ----

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFormat = "dsv3-trainer-state";

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  DSV3_CHECK(in.good(), "[train] cannot read ", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    DSV3_FAIL("[train] ", path, " is not valid JSON: ", e.what());
  }
}

void write_text_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  DSV3_CHECK(out.good(), "[train] cannot write ", path);
}

// The tokenizer a checkpoint should carry: the one given, else the data's own (train/training_data.h).
// Empty when neither is available.
std::string checkpoint_tokenizer(const TrainingData& data, const std::string& given) {
  if (!given.empty()) {
    DSV3_CHECK(fs::is_regular_file(given), "[train] tokenizer ", given, " does not exist");
    return given;
  }
  return data.tokenizer_path();
}

}  // namespace

struct Trainer::Impl {
  TrainRunOptions options;
  TrainerPaths paths;
  std::unique_ptr<TrainingData> data;
  std::string tokenizer;
  TrainParams<float> params;
  TrainParams<float> grads;
  // Under mpirun the ranks are data-parallel (ZeRO-1, dist/zero1.h): each runs grad_accum / D of a
  // step's micro-batches and keeps the optimizer state of its shard of the arena only.
  const Comm& comm;
  std::unique_ptr<Zero1> zero;
  std::unique_ptr<MpiExpertGroup> experts;     // expert parallelism (set_layout with --ep > 1)
  std::unique_ptr<PipelineTrainer> pipeline;   // pipeline parallelism (set_layout with --pp > 1)
  AdamW optimizer;
  TrainActivations<float> acts;
  std::vector<TrainParams<float>> micro_grads;  // more micro-batches' gradients, each summed separately
  mutable TraceRecorder trace;                  // spans of this rank (TrainerPaths::trace_path)
  int64_t step = 0;    // updates done
  int64_t tokens = 0;  // training tokens seen (main-model targets)
  double elapsed_s = 0;

  Impl(const TrainRunOptions& o, const TrainerPaths& p, std::unique_ptr<TrainingData> d)
      : options(o),
        paths(p),
        data(std::move(d)),
        params(o.config),
        grads(params.layout_ptr()),
        comm(Comm::world()),
        zero(comm.distributed() ? std::make_unique<Zero1>(comm, params.size()) : nullptr),
        optimizer(params.layout_ptr(), o.adamw, zero ? zero->shard_begin() : 0, zero ? zero->shard_end() : -1),
        acts(o.config, o.batch_size, o.seq_len, resolve_mtp_depth(o.config, o.step_options())) {}
  bool writes_files() const { return comm.rank() == 0; }
};

namespace {

void check_data(const TrainRunOptions& o, const TrainingData& data) {
  DSV3_CHECK(data.vocab_size() <= o.config.vocab_size, "[train] the data in ", data.path(), " uses a vocabulary of ",
             data.vocab_size(), " ids but the model has vocab_size ", o.config.vocab_size,
             ": train a tokenizer with --vocab-size ", o.config.vocab_size, " or pick a matching preset");
  data.check_fits(o.seq_len);
  // Every run evaluates at its last step: a validation split too small for one batch fails now, not then.
  const int64_t val = data.val_sequences(o.seq_len);
  DSV3_CHECK(val >= o.batch_size, "[train] the validation split of ", data.path(), " has ", val, " sequences of ",
             o.seq_len + 1, " tokens, fewer than one batch of ", o.batch_size, ": give the data a larger validation "
             "split (dsv3 data --val-fraction; more conversations for dsv3 sft) or use a smaller --batch-size");
}

// The batch's packed documents into the activations (none for token shards).
void use_batch(const TrainBatch& batch, TrainActivations<float>& acts) {
  acts.document_start = batch.document_start;
  acts.loss_mask = batch.loss_mask;
}

// Opens the metrics file for a run at `step`: lines of steps after it (a run that went on past its last
// checkpoint) are dropped, a new file starts with the run's header line.
std::ofstream open_metrics(const std::string& path, int64_t step, const json& header) {
  std::vector<std::string> kept;
  if (step > 0 && fs::is_regular_file(path)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception&) {
        continue;  // a line cut short by an interruption
      }
      if (j.contains("type") || (j.contains("step") && j["step"].is_number() && j["step"].get<int64_t>() <= step))
        kept.push_back(line);
    }
  }
  if (kept.empty()) kept.push_back(header.dump());
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  std::ofstream out(path, std::ios::trunc);
  DSV3_CHECK(out.good(), "[train] cannot write the metrics file ", path);
  for (const std::string& line : kept) out << line << "\n";
  out.flush();
  return out;
}

}  // namespace

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::Trainer(Trainer&&) noexcept = default;
Trainer::~Trainer() = default;

Trainer::Trainer(const TrainRunOptions& options, const TrainerPaths& paths, const std::string& init_dir,
                 const TrainingDataOpener& open_data) {
  options.validate();
  std::unique_ptr<TrainingData> data = open_data(paths.data_format, paths.data_dir);
  check_data(options, *data);
  impl_ = std::make_unique<Impl>(options, paths, std::move(data));
  impl_->tokenizer = checkpoint_tokenizer(*impl_->data, paths.tokenizer);
  if (init_dir.empty()) {
    TrainInitOptions init;
    init.init_std = options.init_std;
    init_random(impl_->params, options.seed, init);
  } else {
    load_params(impl_->params, init_dir);
  }
}

Trainer Trainer::resume(const std::string& dir, const TrainerPaths& given, const TrainingDataOpener& open_data) {
  const std::string state_path = dir + "/" + kStateFile;
  DSV3_CHECK(fs::is_regular_file(state_path), "[train] ", dir, " has no ", kStateFile,
             ": it is not a checkpoint written by dsv3 train");
  const json state = read_json_file(state_path);
  DSV3_CHECK(state.is_object() && state.value("format", "") == kStateFormat, "[train] ", state_path,
             " is not a dsv3 trainer state (format \"", kStateFormat, "\")");
  TrainRunOptions options = TrainRunOptions::from_json(field(state, "options", state_path), state_path);
  TrainerPaths paths = given;
  if (paths.data_dir.empty()) paths.data_dir = text(state, "data_dir", state_path);
  if (paths.out_dir.empty()) paths.out_dir = dir;
  paths.data_format = state.value("data_format", std::string("token-shards"));  // older states: shards
  std::unique_ptr<TrainingData> data = open_data(paths.data_format, paths.data_dir);
  check_data(options, *data);
  auto impl = std::make_unique<Impl>(options, paths, std::move(data));
  impl->tokenizer = checkpoint_tokenizer(*impl->data, paths.tokenizer);
  if (impl->tokenizer.empty() && fs::is_regular_file(dir + "/tokenizer.json")) impl->tokenizer = dir + "/tokenizer.json";
  load_params(impl->params, dir);
  impl->optimizer.load(dir + "/" + kOptimizerFile);
  impl->step = number<int64_t>(state, "step", state_path);
  impl->tokens = number<int64_t>(state, "tokens", state_path);
  impl->elapsed_s = number<double>(state, "elapsed_s", state_path);
  const int64_t saved_threads = state.value("threads", int64_t(0));
  if (saved_threads > 0 && saved_threads != num_threads())
    std::fprintf(stderr,
                 "[train] note: %s was trained with %lld threads, this run uses %d: it continues correctly but "
                 "not bit-identically to an uninterrupted run (pass --threads %lld for that)\n",
                 dir.c_str(), (long long)saved_threads, num_threads(), (long long)saved_threads);
  DSV3_CHECK(impl->optimizer.steps() == impl->step, "[train] ", dir, ": the optimizer state is at step ",
             impl->optimizer.steps(), " but trainer_state.json says ", impl->step,
             " (a checkpoint interrupted while being written?)");
  return Trainer(std::move(impl));
}

const TrainRunOptions& Trainer::options() const { return impl_->options; }
int64_t Trainer::step() const { return impl_->step; }
const TrainParams<float>& Trainer::params() const { return impl_->params; }
void Trainer::set_steps(int64_t steps) {
  DSV3_CHECK(steps >= impl_->step, "[train] the run is already at step ", impl_->step, "; cannot end it at ", steps);
  impl_->options.steps = steps;
}

double Trainer::evaluate() {
  Impl& s = *impl_;
  const int64_t B = s.options.batch_size, S = s.options.seq_len;
  const int64_t windows = s.data->val_sequences(S);
  const int64_t batches = std::min(s.options.eval_sequences, windows) / B;
  DSV3_CHECK(batches >= 1, "[train] the val split of ", s.data->path(), " has ", windows, " sequences of ", S + 1,
             " tokens, fewer than one batch of ", B, ": give the data a larger validation split or use a smaller batch");
  const TrainOptions o = s.options.step_options();
  double sum = 0;
  TrainBatch batch;
  for (int64_t b = 0; b < batches; ++b) {
    s.data->val_batch(b * B, B, S, batch);
    use_batch(batch, s.acts);
    sum += train_forward(s.params, s.acts, batch.tokens.data(), o).main_loss;
  }
  return sum / double(batches);
}

void Trainer::save(const std::string& dir) const {
  const Impl& s = *impl_;
  std::error_code ec;
  fs::create_directories(dir, ec);
  DSV3_CHECK(!ec, "[train] cannot create checkpoint directory ", dir, ": ", ec.message());
  // Everything is written into a staging directory first and then moved in, trainer_state.json last:
  // a checkpoint whose state file names step N has every other file of step N.
  // Data-parallel ranks hold the same weights and a shard of the optimizer state each: rank 0 gathers
  // the shards and writes what one process would.
  const std::string staging = dir + "/.staging";
  if (s.writes_files()) {
    fs::remove_all(staging, ec);
    fs::create_directories(staging, ec);
    DSV3_CHECK(!ec, "[train] cannot create ", staging, ": ", ec.message());
  }
  auto span = s.trace.span("save checkpoint", "io");
  if (s.zero) {
    s.zero->save_optimizer(s.optimizer, s.params.layout_ptr(), staging + "/" + kOptimizerFile);
    if (!s.writes_files()) return;
  } else {
    s.optimizer.save(staging + "/" + kOptimizerFile);
  }
  save_params(s.params, staging, DType::F32);
  if (!s.tokenizer.empty()) {
    fs::copy_file(s.tokenizer, staging + "/tokenizer.json", fs::copy_options::overwrite_existing);
    // Its chat template, when it has one beside it (dsv3 chat picks DeepSeek-V3's or R1's by it).
    const fs::path config = fs::path(s.tokenizer).parent_path() / "tokenizer_config.json";
    if (fs::is_regular_file(config))
      fs::copy_file(config, staging + "/tokenizer_config.json", fs::copy_options::overwrite_existing);
  }
  json state;
  state["format"] = kStateFormat;
  state["version"] = 1;
  state["step"] = s.step;
  state["tokens"] = s.tokens;
  state["elapsed_s"] = s.elapsed_s;
  state["threads"] = num_threads();
  state["data_dir"] = fs::absolute(s.paths.data_dir).lexically_normal().string();
  state["data_format"] = s.data->format();
  state["options"] = s.options.to_json();
  write_text_file(staging + "/" + kStateFile, state.dump(2) + "\n");

  // Old model shards may not be overwritten by the new set (sharding can differ): remove them first.
  fs::remove(dir + "/" + kStateFile, ec);
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model", 0) == 0 && (name.ends_with(".safetensors") || name.ends_with(".index.json")))
      fs::remove(entry.path(), ec);
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(staging)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return (a == kStateFile) < (b == kStateFile) || ((a == kStateFile) == (b == kStateFile) && a < b);
  });
  for (const std::string& name : names) {
    fs::rename(staging + "/" + name, dir + "/" + name, ec);
    DSV3_CHECK(!ec, "[train] cannot move ", name, " into ", dir, ": ", ec.message());
  }
  fs::remove_all(staging, ec);
}

namespace {

// The per-micro-batch figures of a step record, in a fixed order (for gathering across ranks).
std::vector<double> pack_stats(const StepStats& st) {
  std::vector<double> v = {st.loss, st.main_loss, st.balance_loss, double(st.tokens)};
  v.insert(v.end(), st.mtp_loss.begin(), st.mtp_loss.end());
  return v;
}

// Adds one micro-batch's figures (pack_stats) to the step record with weight w.
void add_stats(StepRecord& r, const double* v, size_t mtp_depth, double w, int64_t& tokens) {
  r.loss += w * v[0];
  r.main_loss += w * v[1];
  r.balance_loss += w * v[2];
  tokens += int64_t(v[3]);
  r.mtp_loss.resize(mtp_depth, 0.0);
  for (size_t k = 0; k < mtp_depth; ++k) r.mtp_loss[k] += w * v[4 + k];
}

}  // namespace

// One step's micro-batches, gradients and update. Micro-batch m of step s is batch s·A + m; a
// process's gradient is the sum of the micro-batches' gradients, each computed on its own and added in
// order m = 0, 1, ... — the order ZeRO-1's reduce-scatter adds them in across data-parallel ranks (rank r
// runs micro-batches [r·A/D, (r+1)·A/D)), so a data-parallel run takes the same steps bit for bit.
OptimizerStepStats Trainer::train_one_step(Impl& s, double lr, TrainBatch& batch, StepRecord& r) {
  const TrainRunOptions& o = s.options;
  TrainOptions step_options = o.step_options();
  step_options.moe.expert_group = s.experts.get();
  const int64_t B = o.batch_size, S = o.seq_len, A = o.grad_accum;
  const int64_t W = s.comm.size();
  const size_t mtp_depth = size_t(resolve_mtp_depth(o.config, step_options));
  std::vector<const float*> local_grads;  // this rank's micro-batch gradients, for the reduce-scatter
  std::vector<int64_t> order;             // the order the reduce-scatter adds every rank's arenas in
  std::vector<double> figures;            // pack_stats of every micro-batch of the step, in order
  if (s.pipeline) {
    // The pipeline of data-parallel rank d runs micro-batches [d·M, (d+1)·M) through its stages.
    const int64_t M = s.pipeline->micro_batches(), D = A / M, P = W / D, d = s.comm.rank() % D;
    while (s.micro_grads.size() < size_t(M - 1)) s.micro_grads.emplace_back(s.params.layout_ptr());
    std::vector<TrainParams<float>*> grads = {&s.grads};
    for (int64_t m = 1; m < M; ++m) grads.push_back(&s.micro_grads[size_t(m - 1)]);
    std::vector<std::optional<StepStats>> stats;
    std::map<int64_t, std::vector<int64_t>> loads;
    s.pipeline->run(
        s.params, step_options,
        [&](int64_t m, TrainBatch& batch) { s.data->train_batch(s.step * A + d * M + m, B, S, o.seed, batch); },
        grads, stats, loads, s.trace);
    for (TrainParams<float>* g : grads) local_grads.push_back(g->data());
    // Rank q = stage·D + d holds arena j of micro-batch d·M + j: add them micro-batch by micro-batch.
    for (int64_t dp = 0; dp < D; ++dp)
      for (int64_t j = 0; j < M; ++j)
        for (int64_t stage = 0; stage < P; ++stage) order.push_back((stage * D + dp) * M + j);
    // Each micro-batch's figures come from the rank that ran its last stage.
    const size_t fields = 5 + mtp_depth;
    std::vector<double> local;
    for (const std::optional<StepStats>& st : stats) {
      StepStats none;
      none.mtp_loss.resize(mtp_depth, 0.0);
      local.push_back(st ? 1.0 : 0.0);
      const std::vector<double> packed = pack_stats(st ? *st : none);
      local.insert(local.end(), packed.begin(), packed.end());
    }
    std::vector<double> all(local.size() * size_t(W));
    {
      auto span = s.trace.span("all-gather losses", "communication");
      s.comm.allgather(local.data(), int64_t(local.size()), all.data());
    }
    for (int64_t g = 0; g < A; ++g)
      for (int64_t stage = 0; stage < P; ++stage) {
        const double* at = all.data() + size_t((stage * D + g / M) * M + g % M) * fields;
        if (at[0] != 0) figures.insert(figures.end(), at + 1, at + fields);
      }
    DSV3_CHECK(int64_t(figures.size()) == A * int64_t(fields - 1), "[train] a micro-batch of the step reached no "
               "pipeline's last stage");
    const ModelConfig& c = o.config;
    for (int64_t l = 0; l < c.num_hidden_layers + int64_t(mtp_depth); ++l) {
      if (!c.is_moe_layer(l)) continue;
      r.moe_layers.push_back(l);
      std::vector<int64_t> load = loads[l];
      load.resize(size_t(c.n_routed_experts), 0);
      r.expert_load.push_back(std::move(load));
    }
  } else {
    DSV3_CHECK(A % W == 0, "[train] --grad-accum ", A, " must be a multiple of the ", W, " data-parallel ranks");
    const int64_t k = A / W, first = s.comm.rank() * k;
    const size_t buffers = size_t(W == 1 ? std::min<int64_t>(A - 1, 1) : k - 1);
    while (s.micro_grads.size() < buffers) s.micro_grads.emplace_back(s.params.layout_ptr());
    std::vector<double> local;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t m = first + j;
      s.data->train_batch(s.step * A + m, B, S, o.seed, batch);
      use_batch(batch, s.acts);
      // One process adds each further micro-batch into grads as it goes; a data-parallel rank keeps its
      // micro-batches apart for the reduce-scatter.
      TrainParams<float>& g = j == 0 ? s.grads : s.micro_grads[size_t(W == 1 ? 0 : j - 1)];
      g.zero();
      StepStats st;
      {
        auto span = s.trace.span(cat("forward+backward, micro-batch ", m), "compute");
        st = train_forward_backward(s.params, g, s.acts, batch.tokens.data(), step_options);
      }
      if (W == 1 && j > 0) {
        auto span = s.trace.span("add micro-batch gradient", "compute");
        float* acc = s.grads.data();
        const float* add = g.data();
        parallel_for(s.grads.size(), 1 << 14, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) acc[i] = acc[i] + add[i];
        });
      }
      if (W > 1) local_grads.push_back(g.data());
      const std::vector<double> packed = pack_stats(st);
      local.insert(local.end(), packed.begin(), packed.end());
      if (j == 0) {
        r.moe_layers = st.moe_layers;
        r.expert_load = st.expert_load;
      } else {
        for (size_t l = 0; l < st.expert_load.size(); ++l)
          for (size_t e = 0; e < st.expert_load[l].size(); ++e) r.expert_load[l][e] += st.expert_load[l][e];
      }
    }
    // The step's figures in micro-batch order, from every rank.
    figures.resize(local.size() * size_t(W));
    auto span = s.trace.span("all-gather losses", "communication");
    s.comm.allgather(local.data(), int64_t(local.size()), figures.data());
  }
  {
    auto span = s.trace.span("all-reduce expert loads", "communication");
    for (std::vector<int64_t>& load : r.expert_load) s.comm.allreduce_sum(load.data(), int64_t(load.size()));
  }
  const size_t fields = figures.size() / size_t(A);
  for (int64_t m = 0; m < A; ++m) add_stats(r, figures.data() + size_t(m) * fields, mtp_depth, 1.0 / double(A), s.tokens);
  DSV3_CHECK(std::isfinite(r.loss), "[train] the loss is ", r.loss, " at step ", s.step + 1,
             ": training diverged (try a lower --lr)");
  if (!s.zero) {
    auto span = s.trace.span("adamw", "optimizer");
    return s.optimizer.step(s.params, s.grads, lr, 1.0 / double(A));
  }
  {
    auto span = s.trace.span("reduce-scatter gradients", "communication");
    s.zero->reduce_scatter(local_grads, s.grads.data(), order);
  }
  double sum_of_squares = 0;
  {
    auto span = s.trace.span("all-gather norm partials", "communication");
    sum_of_squares = s.zero->sum_of_squares(s.grads);
  }
  OptimizerStepStats opt;
  {
    auto span = s.trace.span("adamw (shard)", "optimizer");
    opt = s.optimizer.step_shard(s.params, s.grads, lr, 1.0 / double(A), sum_of_squares);
  }
  auto span = s.trace.span("all-gather weights", "communication");
  s.zero->allgather(s.params.data());
  return opt;
}

// Rank 0 writes every rank's spans as one timeline, a process per rank.
void Trainer::write_trace(Impl& s) {
  const std::vector<TraceEvent> events = gather_trace_events(s.comm, s.trace.events());
  if (!s.writes_files()) return;
  std::vector<std::string> names;
  for (int64_t r = 0; r < s.comm.size(); ++r) names.push_back(s.comm.distributed() ? cat("rank ", r) : "dsv3 train");
  write_chrome_trace(s.paths.trace_path, events, names);
}

void Trainer::set_layout(const ParallelLayout& layout) {
  Impl& s = *impl_;
  DSV3_CHECK(layout.world == s.comm.size() && layout.rank == s.comm.rank(), "[train] the layout is for rank ",
             layout.rank, " of ", layout.world, ", this is rank ", s.comm.rank(), " of ", s.comm.size());
  const TrainRunOptions& o = s.options;
  DSV3_CHECK(layout.pp == 1 || layout.micro_batches * layout.dp == o.grad_accum, "[train] each of the ", layout.dp,
             " pipelines runs ", layout.micro_batches, " micro-batches a step, but --grad-accum is ", o.grad_accum);
  s.experts = layout.ep > 1 ? std::make_unique<MpiExpertGroup>(s.comm, layout, &s.trace) : nullptr;
  s.pipeline = layout.pp > 1 ? std::make_unique<PipelineTrainer>(s.comm, layout, o.config, o.batch_size, o.seq_len,
                                                                 resolve_mtp_depth(o.config, o.step_options()))
                             : nullptr;
}

size_t Trainer::optimizer_state_bytes() const {
  const AdamW& a = impl_->optimizer;
  return size_t(a.shard_end() - a.shard_begin()) * 2 * a.moment_element_bytes();
}

void Trainer::run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop) {
  Impl& s = *impl_;
  const TrainRunOptions& o = s.options;
  const int64_t B = o.batch_size, S = o.seq_len;
  TrainBatch batch;
  std::ofstream metrics;
  if (!s.paths.metrics_path.empty() && s.writes_files()) {
    json header = {{"type", "run"}, {"params", s.params.size()}, {"threads", num_threads()}};
    header["options"] = o.to_json();
    metrics = open_metrics(s.paths.metrics_path, s.step, header);
  }
  bool saved = false;
  // Every rank stops at the same step (a signal may reach the ranks of a launch at different times).
  const auto stop_requested = [&] {
    int64_t any = stop && stop->load() ? 1 : 0;
    s.comm.allreduce_sum(&any, 1);
    return any > 0;
  };
  if (!s.paths.trace_path.empty()) {
    s.comm.barrier();  // the ranks' clocks start together
    s.trace.restart();
    s.trace.enabled = true;
  }
  while (s.step < o.steps && !stop_requested()) {
    auto step_span = s.trace.span(cat("step ", s.step + 1), "step");
    const auto start = std::chrono::steady_clock::now();
    const double lr = o.schedule.lr(s.step);
    StepRecord r;
    const OptimizerStepStats opt = train_one_step(s, lr, batch, r);
    if (o.balance == BalanceMode::aux_free) update_correction_biases(s.params, r.moe_layers, r.expert_load, o.bias_gamma);
    ++s.step;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    s.elapsed_s += seconds;

    r.step = s.step;
    r.tokens = s.tokens;
    r.lr = lr;
    r.grad_norm = opt.grad_norm;
    r.tokens_per_s = double(B * S * o.grad_accum) / seconds;
    r.elapsed_s = s.elapsed_s;
    for (const std::vector<int64_t>& load : r.expert_load) r.max_vio_layers.push_back(max_violation(load));
    for (double v : r.max_vio_layers) r.max_vio += v / double(r.max_vio_layers.size());
    const bool last = s.step == o.steps;
    if ((last || (o.eval_every > 0 && s.step % o.eval_every == 0)) && s.writes_files()) {
      auto span = s.trace.span("evaluate", "eval");
      r.val_loss = evaluate();
    }
    saved = false;
    if (!last && o.save_every > 0 && s.step % o.save_every == 0) {
      save(s.paths.out_dir);
      saved = true;
    }
    if (metrics.is_open()) {
      metrics << r.to_json().dump() << "\n";
      metrics.flush();
    }
    if (on_step) on_step(r);
  }
  if (!saved) save(s.paths.out_dir);
  if (!s.paths.trace_path.empty()) write_trace(s);
}

}  // namespace dsv3
