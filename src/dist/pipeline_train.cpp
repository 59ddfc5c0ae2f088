#include "dist/pipeline_train.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "dist/pipeline_run.h"

namespace dsv3 {

namespace {

std::string format_percent(double part, double whole) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%%", 100 * part / whole);
  return text;
}

}  // namespace

std::vector<ModelPart> pipeline_stage_parts(const ModelConfig& c, int64_t stages, int64_t seq, int64_t mtp_depth) {
  const int64_t L = c.num_hidden_layers;
  DSV3_CHECK(stages >= 1 && stages <= L, "[train] ", stages, " pipeline stages need at least one layer each; the "
             "model has ", L);
  const auto cost = [&](int64_t first, int64_t end) { return part_train_flops(c, {first, end}, 1, seq, mtp_depth); };
  // best[s][l]: the smallest largest stage cost of layers [0, l) in s stages; cut[s][l]: where its last stage starts.
  const double inf = 1e300;
  std::vector<std::vector<double>> best(size_t(stages + 1), std::vector<double>(size_t(L + 1), inf));
  std::vector<std::vector<int64_t>> cut(size_t(stages + 1), std::vector<int64_t>(size_t(L + 1), 0));
  best[0][0] = 0;
  for (int64_t s = 1; s <= stages; ++s)
    for (int64_t l = s; l <= L; ++l)
      for (int64_t j = s - 1; j < l; ++j) {
        const double worst = std::max(best[size_t(s - 1)][size_t(j)], cost(j, l));
        if (worst < best[size_t(s)][size_t(l)]) {
          best[size_t(s)][size_t(l)] = worst;
          cut[size_t(s)][size_t(l)] = j;
        }
      }
  std::vector<ModelPart> parts(static_cast<size_t>(stages));
  for (int64_t s = stages, end = L; s >= 1; --s) {
    const int64_t first = cut[size_t(s)][size_t(end)];
    parts[size_t(s - 1)] = ModelPart{first, end};
    end = first;
  }
  return parts;
}

std::string describe_pipeline_stages(const ModelConfig& c, const ParallelLayout& layout, int64_t seq,
                                     int64_t mtp_depth) {
  const int64_t stages = pipeline_stages(layout.schedule, layout.pp);
  const std::vector<ModelPart> parts = pipeline_stage_parts(c, stages, seq, mtp_depth);
  std::string out = cat("[train] ", stages, " pipeline stages, layers split to balance their training FLOPs:\n");
  const double total = train_step_flops(c, 1, seq, mtp_depth);
  for (int64_t s = 0; s < stages; ++s) {
    const ModelPart& p = parts[size_t(s)];
    out += cat("  stage ", s, ": layer", p.end_layer - p.first_layer > 1 ? "s " : " ", p.first_layer,
               p.end_layer - p.first_layer > 1 ? cat("-", p.end_layer - 1) : std::string(),
               p.first() ? ", embedding" : "", p.last(c) ? (mtp_depth > 0 ? ", final norm, head, loss, MTP" : ", final norm, head, loss") : "",
               cat(" (", format_percent(part_train_flops(c, p, 1, seq, mtp_depth), total), " of the FLOPs)"),
               "; pipeline rank");
    const int pipes = pipeline_pipes(layout.schedule);
    out += pipes > 1 ? "s " : " ";
    for (int pipe = 0; pipe < pipes; ++pipe)
      out += cat(pipe > 0 ? " and " : "", pipeline_rank_of(layout.schedule, layout.pp, pipe, s),
                 pipes > 1 ? (pipe == 0 ? " (down)" : " (up)") : "");
    out += "\n";
  }
  return out;
}

// The PipelineWork of one step: the model's parts on this rank's slots of the schedule.
class PipelineTrainer::Work final : public PipelineWork {
 public:
  Work(PipelineTrainer& owner, TrainParams<float>& params, const TrainOptions& options,
       const std::function<void(int64_t, TrainBatch&)>& batch_of,
       const std::vector<TrainParams<float>*>& grads, std::vector<std::optional<StepStats>>& stats,
       std::map<int64_t, std::vector<int64_t>>& loads)
      : o_(owner), params_(params), options_(options), batch_of_(batch_of), grads_(grads), stats_(stats),
        loads_(loads) {
    rows_ = o_.batch_ * o_.seq_;
    H_ = o_.config_.hidden_size;
    demb_rows_ = mtp_embedding_rows(o_.batch_, o_.seq_, o_.mtp_depth_);
  }

  int64_t forward_bytes(int) const override { return rows_ * H_ * int64_t(sizeof(float)) + int64_t(sizeof(double)); }
  int64_t backward_bytes(int) const override { return (rows_ + demb_rows_) * H_ * int64_t(sizeof(float)); }

  void forward(int phase, int64_t mb, const void* in, void* out) override {
    const PipelineSlot at = slot(phase);
    const int64_t m = micro_batch(at.pipe, mb);
    const ModelPart& part = o_.parts_[size_t(at.stage)];
    TrainActivations<float>& acts = acquire({phase, m});
    TrainBatch& batch = batches_[{phase, m}];
    batch_of_(m, batch);
    acts.document_start = batch.document_start;
    acts.loss_mask = batch.loss_mask;
    double balance_in = 0;
    if (in) std::memcpy(&balance_in, static_cast<const char*>(in) + rows_ * H_ * sizeof(float), sizeof(double));
    const StepStats st = train_part_forward(params_, *grads_[size_t(m)], acts, batch.tokens.data(), options_, part,
                                            static_cast<const float*>(in), balance_in, static_cast<float*>(out));
    for (size_t i = 0; i < st.moe_layers.size(); ++i) {
      std::vector<int64_t>& sum = loads_[st.moe_layers[i]];
      sum.resize(st.expert_load[i].size(), 0);
      for (size_t e = 0; e < sum.size(); ++e) sum[e] += st.expert_load[i][e];
    }
    if (part.last(o_.config_))
      stats_[size_t(m)] = st;
    else
      std::memcpy(static_cast<char*>(out) + rows_ * H_ * sizeof(float), &st.balance_loss, sizeof(double));
  }

  void backward(int phase, int64_t mb, bool zero_bubble, const void* in, void* out) override {
    const PipelineSlot at = slot(phase);
    const int64_t m = micro_batch(at.pipe, mb);
    const ModelPart& part = o_.parts_[size_t(at.stage)];
    float* demb = static_cast<float*>(out) + rows_ * H_;
    // The MTP embedding rows pass through (the last stage writes them, the first reads them).
    if (in) std::memcpy(demb, static_cast<const float*>(in) + rows_ * H_, size_t(demb_rows_ * H_) * sizeof(float));
    TrainActivations<float>& acts = *active_.at({phase, m});
    // A zero-bubble backward leaves its weight gradients to the W op — except under expert
    // parallelism, whose expert weight gradients travel back to their ranks inside the backward.
    const bool defer = zero_bubble && options_.moe.expert_group == nullptr;
    acts.ws.defer_weight_grads(defer ? &deferred_[{phase, m}] : nullptr);
    train_part_backward(params_, *grads_[size_t(m)], acts, options_, part, static_cast<const float*>(in),
                        static_cast<float*>(out), demb);
    acts.ws.defer_weight_grads(nullptr);
    release({phase, m});
  }

  // The deferred weight gradients of the zero-bubble backward of (phase, mb), into its micro-batch's arena.
  void weight(int phase, int64_t mb) override {
    const auto it = deferred_.find({phase, micro_batch(slot(phase).pipe, mb)});
    if (it == deferred_.end()) return;  // not deferred (expert parallelism)
    run_deferred_weight_grads(it->second, weight_ws_);
    deferred_.erase(it);
  }

 private:
  PipelineSlot slot(int phase) const {
    return pipeline_slot(o_.schedule_.kind, o_.schedule_.ranks, o_.comm_.rank(), phase);
  }
  // DualPipe's upward pipe carries the second half of the step's micro-batches.
  int64_t micro_batch(int pipe, int64_t mb) const { return pipe == 1 ? o_.schedule_.micro_batches / 2 + mb : mb; }

  // A micro-batch in flight in one of this rank's stages: (phase, micro-batch). DualPipeV runs every
  // micro-batch through both of a rank's stages; their parameters differ, so both add into its arena.
  using InFlight = std::pair<int, int64_t>;

  TrainActivations<float>& acquire(InFlight at) {
    DSV3_CHECK(!active_.count(at), "[pipeline] micro-batch ", at.second, " entered phase ", at.first,
               " of this rank twice");
    std::unique_ptr<TrainActivations<float>> acts;
    if (o_.free_activations_.empty()) {
      acts = std::make_unique<TrainActivations<float>>(o_.config_, o_.batch_, o_.seq_, o_.mtp_depth_);
    } else {
      acts = std::move(o_.free_activations_.back());
      o_.free_activations_.pop_back();
    }
    return *(active_[at] = std::move(acts));
  }
  void release(InFlight at) {
    o_.free_activations_.push_back(std::move(active_.at(at)));
    active_.erase(at);
    batches_.erase(at);
  }

  PipelineTrainer& o_;
  TrainParams<float>& params_;
  const TrainOptions& options_;
  const std::function<void(int64_t, TrainBatch&)>& batch_of_;
  const std::vector<TrainParams<float>*>& grads_;
  std::vector<std::optional<StepStats>>& stats_;
  std::map<int64_t, std::vector<int64_t>>& loads_;
  int64_t rows_ = 0, H_ = 0, demb_rows_ = 0;
  std::map<InFlight, std::unique_ptr<TrainActivations<float>>> active_;
  std::map<InFlight, TrainBatch> batches_;
  std::map<InFlight, DeferredWeightGrads<float>> deferred_;  // zero-bubble backwards' weight gradients
  Workspace<float> weight_ws_;                                // where the W ops run them
};

PipelineTrainer::PipelineTrainer(const Comm& world, const ParallelLayout& layout, const ModelConfig& config,
                                 int64_t batch, int64_t seq, int64_t mtp_depth)
    : comm_(world.split(int(layout.dp_rank()), int(layout.stage()))),
      schedule_(build_pipeline_schedule(layout.schedule, layout.pp, layout.micro_batches)),
      parts_(pipeline_stage_parts(config, pipeline_stages(layout.schedule, layout.pp), seq, mtp_depth)),
      config_(config),
      batch_(batch),
      seq_(seq),
      mtp_depth_(mtp_depth) {
  DSV3_CHECK(comm_.size() == layout.pp && comm_.rank() == layout.stage(), "[train] rank ", layout.rank,
             " is rank ", comm_.rank(), " of a ", comm_.size(), "-rank pipeline; the layout says stage ",
             layout.stage(), " of ", layout.pp);
}

PipelineTrainer::~PipelineTrainer() = default;

void PipelineTrainer::run(TrainParams<float>& params, const TrainOptions& options,
                          const std::function<void(int64_t, TrainBatch&)>& batch_of,
                          const std::vector<TrainParams<float>*>& grads, std::vector<std::optional<StepStats>>& stats,
                          std::map<int64_t, std::vector<int64_t>>& loads, TraceRecorder& trace) {
  const int64_t M = schedule_.micro_batches;
  DSV3_CHECK(int64_t(grads.size()) == M, "[pipeline] ", grads.size(), " gradient arenas for ", M, " micro-batches");
  for (TrainParams<float>* g : grads) g->zero();
  stats.assign(size_t(M), std::nullopt);
  loads.clear();
  Work work(*this, params, options, batch_of, grads, stats, loads);
  run_pipeline(comm_, schedule_, work, trace);
}

}  // namespace dsv3
