#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numbers>

#include "core/profiler.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "io/safetensors.h"

namespace dsv3 {

// ---- learning rate ----

double LrSchedule::lr(int64_t step) const {
  if (step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
  if (decay_end <= decay_start || step < decay_start) return peak;
  if (step >= decay_end) return final_lr;
  const double progress = double(step - decay_start) / double(decay_end - decay_start);
  return final_lr + (peak - final_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

LrSchedule LrSchedule::deepseek_v3(int64_t total_steps, double peak) {
  // TR §4.2 over 14.8T tokens: warm-up 2K steps, constant to 10T, cosine to peak/10 by 14.3T, then
  // the final rate for the last 0.5T.
  LrSchedule s;
  s.peak = peak;
  s.final_lr = peak / 10.0;
  s.warmup_steps = std::clamp<int64_t>(std::llround(0.02 * double(total_steps)), 1, 2000);
  s.decay_start = std::max(s.warmup_steps, int64_t(std::llround(double(total_steps) * 10.0 / 14.8)));
  s.decay_end = std::max(s.decay_start, int64_t(std::llround(double(total_steps) * 14.3 / 14.8)));
  return s;
}

void LrSchedule::validate() const {
  DSV3_CHECK(std::isfinite(peak) && peak >= 0, "[train] learning rate must be >= 0, got ", peak);
  DSV3_CHECK(std::isfinite(final_lr) && final_lr >= 0, "[train] final learning rate must be >= 0, got ", final_lr);
  DSV3_CHECK(warmup_steps >= 0, "[train] warm-up steps must be >= 0, got ", warmup_steps);
  DSV3_CHECK(decay_start >= 0 && decay_end >= 0, "[train] decay steps must be >= 0, got ", decay_start, " .. ",
             decay_end);
  DSV3_CHECK(decay_end == decay_start || (decay_end > decay_start && decay_start >= warmup_steps),
             "[train] the cosine decay [", decay_start, ", ", decay_end,
             ") must start after the warm-up (", warmup_steps, " steps) and end after it starts");
}

// ---- AdamW ----

namespace {

constexpr int64_t kChunk = kOptimizerChunk;

// A run of arena elements the optimizer updates (one tensor), with whether it is weight-decayed.
struct Segment {
  int64_t begin = 0, end = 0;
  bool decay = false;
};

bool is_decayed(TensorRole role) {
  return role == TensorRole::embedding || role == TensorRole::head || role == TensorRole::linear ||
         role == TensorRole::router_gate;
}

std::vector<Segment> optimized_segments(const ParamLayout& layout) {
  std::vector<Segment> segments;
  for (const ParamInfo& p : layout.tensors)
    if (!p.alias && p.trainable()) segments.push_back({p.offset, p.offset + p.numel, is_decayed(p.role)});
  std::sort(segments.begin(), segments.end(), [](const Segment& a, const Segment& b) { return a.begin < b.begin; });
  return segments;
}

// Calls fn(segment, begin, end) for the parts of the segments that fall into [lo, hi), in order.
template <typename Fn>
void for_segments_in(const std::vector<Segment>& segments, int64_t lo, int64_t hi, Fn&& fn) {
  auto it = std::upper_bound(segments.begin(), segments.end(), lo,
                             [](int64_t v, const Segment& s) { return v < s.end; });
  for (; it != segments.end() && it->begin < hi; ++it) {
    const int64_t b = std::max(lo, it->begin), e = std::min(hi, it->end);
    if (b < e) fn(*it, b, e);
  }
}

std::vector<double> square_partials(const std::vector<Segment>& segments, const float* g, int64_t total,
                                    int64_t first_chunk, int64_t last_chunk) {
  std::vector<double> partial(size_t(last_chunk - first_chunk), 0.0);
  parallel_for(last_chunk - first_chunk, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = first_chunk + cb; c < first_chunk + ce; ++c) {
      double sum = 0;
      for_segments_in(segments, c * kChunk, std::min(total, (c + 1) * kChunk), [&](const Segment&, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += double(g[i]) * double(g[i]);
      });
      partial[size_t(c - first_chunk)] = sum;
    }
  });
  return partial;
}

double sum_of_squares(const std::vector<Segment>& segments, const float* g, int64_t total) {
  double sum = 0;
  for (double p : square_partials(segments, g, total, 0, (total + kChunk - 1) / kChunk)) sum += p;
  return sum;
}

const char* moment_dtype_name(MomentDtype d) { return d == MomentDtype::bf16 ? "bf16" : "f32"; }

}  // namespace

double global_grad_norm(const TrainParams<float>& grads) {
  return std::sqrt(sum_of_squares(optimized_segments(grads.layout()), grads.data(), grads.size()));
}

std::vector<double> grad_square_partials(const TrainParams<float>& grads, int64_t first_chunk, int64_t last_chunk) {
  const int64_t chunks = (grads.size() + kChunk - 1) / kChunk;
  DSV3_CHECK(0 <= first_chunk && first_chunk <= last_chunk && last_chunk <= chunks, "[adamw] chunks [", first_chunk,
             ", ", last_chunk, ") outside the arena's ", chunks);
  return square_partials(optimized_segments(grads.layout()), grads.data(), grads.size(), first_chunk, last_chunk);
}

AdamW::AdamW(std::shared_ptr<const ParamLayout> layout, const AdamWOptions& options, int64_t shard_begin,
             int64_t shard_end)
    : layout_(std::move(layout)), options_(options) {
  DSV3_CHECK(layout_ != nullptr, "[adamw] no parameter layout");
  shard_begin_ = shard_begin;
  shard_end_ = shard_end < 0 ? layout_->total : shard_end;
  DSV3_CHECK(0 <= shard_begin_ && shard_begin_ <= shard_end_ && shard_end_ <= layout_->total &&
                 shard_begin_ % kChunk == 0 && (shard_end_ % kChunk == 0 || shard_end_ == layout_->total),
             "[adamw] shard [", shard_begin_, ", ", shard_end_, ") is not a run of whole ", kChunk,
             "-element chunks of the ", layout_->total, "-element arena");
  DSV3_CHECK(options_.beta1 >= 0 && options_.beta1 < 1 && options_.beta2 >= 0 && options_.beta2 < 1,
             "[adamw] betas must lie in [0, 1), got ", options_.beta1, ", ", options_.beta2);
  DSV3_CHECK(options_.eps > 0, "[adamw] eps must be > 0, got ", options_.eps);
  DSV3_CHECK(options_.weight_decay >= 0, "[adamw] weight decay must be >= 0, got ", options_.weight_decay);
  DSV3_CHECK(options_.clip_norm >= 0, "[adamw] clip norm must be >= 0 (0 disables), got ", options_.clip_norm);
  const size_t n = size_t(shard_end_ - shard_begin_);
  if (options_.moments == MomentDtype::f32) {
    m_f32_.assign(n, 0.0f);
    v_f32_.assign(n, 0.0f);
  } else {
    m_bf16_.assign(n, 0);
    v_bf16_.assign(n, 0);
  }
}

OptimizerStepStats AdamW::step(TrainParams<float>& params, const TrainParams<float>& grads, double lr,
                               double grad_scale) {
  DSV3_CHECK(shard_begin_ == 0 && shard_end_ == layout_->total, "[adamw] a sharded optimizer steps with "
             "step_shard (the norm needs every shard's gradients)");
  DSV3_CHECK(grads.size() == layout_->total, "[adamw] the gradients do not have the optimizer's layout");
  return step_shard(params, grads, lr, grad_scale,
                    sum_of_squares(optimized_segments(*layout_), grads.data(), layout_->total));
}

void* AdamW::moment_bytes(bool second) {
  if (options_.moments == MomentDtype::bf16) return (second ? v_bf16_ : m_bf16_).data();
  return (second ? v_f32_ : m_f32_).data();
}

const void* AdamW::moment_bytes(bool second) const { return const_cast<AdamW*>(this)->moment_bytes(second); }

OptimizerStepStats AdamW::step_shard(TrainParams<float>& params, const TrainParams<float>& grads, double lr,
                                     double grad_scale, double sum_of_squares) {
  DSV3_ZONE("adamw.step");
  DSV3_CHECK(params.size() == layout_->total && grads.size() == layout_->total,
             "[adamw] parameters or gradients do not have the optimizer's layout");
  DSV3_CHECK(std::isfinite(lr) && lr >= 0, "[adamw] learning rate must be finite and >= 0, got ", lr);
  const std::vector<Segment> segments = optimized_segments(*layout_);
  OptimizerStepStats stats;
  stats.grad_norm = std::sqrt(sum_of_squares) * grad_scale;
  DSV3_CHECK(std::isfinite(stats.grad_norm), "[adamw] the gradient norm is ", stats.grad_norm,
             ": the loss diverged (try a lower learning rate)");
  if (options_.clip_norm > 0 && stats.grad_norm > options_.clip_norm)
    stats.clip_scale = options_.clip_norm / (stats.grad_norm + 1e-6);

  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const float beta1 = float(b1), beta2 = float(b2), eps = float(options_.eps);
  const float g_scale = float(grad_scale * stats.clip_scale);
  const float step_size = float(lr / (1.0 - std::pow(b1, double(steps_))));
  const float v_correction = float(1.0 / std::sqrt(1.0 - std::pow(b2, double(steps_))));
  const float decay_factor = float(1.0 - lr * options_.weight_decay);
  const bool bf16 = options_.moments == MomentDtype::bf16;
  float* p = params.data();
  const float* g = grads.data();
  const int64_t first_chunk = shard_begin_ / kChunk, chunks = (shard_end_ - shard_begin_ + kChunk - 1) / kChunk;
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    const int64_t lo = (first_chunk + cb) * kChunk, hi = std::min(shard_end_, (first_chunk + ce) * kChunk);
    for_segments_in(segments, lo, hi, [&](const Segment& s, int64_t b, int64_t e) {
      const float decay = s.decay ? decay_factor : 1.0f;
      for (int64_t i = b; i < e; ++i) {
        const float gi = g[i] * g_scale;
        const size_t k = size_t(i - shard_begin_);  // the moments' index
        float m = bf16 ? bf16_to_f32(m_bf16_[k]) : m_f32_[k];
        float v = bf16 ? bf16_to_f32(v_bf16_[k]) : v_f32_[k];
        m = beta1 * m + (1.0f - beta1) * gi;
        v = beta2 * v + (1.0f - beta2) * gi * gi;
        if (bf16) {
          m_bf16_[k] = f32_to_bf16(m);
          v_bf16_[k] = f32_to_bf16(v);
        } else {
          m_f32_[k] = m;
          v_f32_[k] = v;
        }
        // Decoupled decay first, then the bias-corrected Adam step (PyTorch's AdamW order).
        p[i] = p[i] * decay - step_size * m / (std::sqrt(v) * v_correction + eps);
      }
    });
  });
  return stats;
}

void AdamW::save(const std::string& path) const {
  DSV3_CHECK(shard_begin_ == 0 && shard_end_ == layout_->total, "[adamw] save needs the whole state: gather the "
             "shards first");
  SafetensorsWriter writer;
  writer.set_metadata("format", "dsv3-adamw");
  writer.set_metadata("steps", cat(steps_));
  writer.set_metadata("moments", moment_dtype_name(options_.moments));
  writer.set_metadata("beta1", cat(options_.beta1));
  writer.set_metadata("beta2", cat(options_.beta2));
  writer.set_metadata("eps", cat(options_.eps));
  writer.set_metadata("weight_decay", cat(options_.weight_decay));
  writer.set_metadata("clip_norm", cat(options_.clip_norm));
  const bool bf16 = options_.moments == MomentDtype::bf16;
  const DType dtype = bf16 ? DType::BF16 : DType::F32;
  for (const ParamInfo& p : layout_->tensors) {
    if (p.alias || !p.trainable()) continue;
    const size_t at = size_t(p.offset);
    writer.add(p.name + ".exp_avg", dtype, p.shape,
               bf16 ? static_cast<const void*>(m_bf16_.data() + at) : static_cast<const void*>(m_f32_.data() + at));
    writer.add(p.name + ".exp_avg_sq", dtype, p.shape,
               bf16 ? static_cast<const void*>(v_bf16_.data() + at) : static_cast<const void*>(v_f32_.data() + at));
  }
  writer.write_file(path);
}

void AdamW::load(const std::string& path) {
  SafetensorsFile file(path);
  const auto& meta = file.metadata();
  const auto field = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    DSV3_CHECK(it != meta.end(), "[adamw] ", path, " is not an optimizer state file (no \"", key, "\" metadata)");
    return it->second;
  };
  DSV3_CHECK(field("format") == "dsv3-adamw", "[adamw] ", path, " has format \"", field("format"),
             "\", expected dsv3-adamw");
  DSV3_CHECK(field("moments") == moment_dtype_name(options_.moments), "[adamw] ", path, " holds ",
             field("moments"), " moments but the run keeps them in ", moment_dtype_name(options_.moments),
             " (--adam-moments must match the saved run)");
  int64_t steps = 0;
  try {
    steps = std::stoll(field("steps"));
  } catch (const std::exception&) {
    DSV3_FAIL("[adamw] ", path, ": step count \"", field("steps"), "\" is not an integer");
  }
  DSV3_CHECK(steps >= 0, "[adamw] ", path, ": negative step count ", steps);
  const bool bf16 = options_.moments == MomentDtype::bf16;
  const DType dtype = bf16 ? DType::BF16 : DType::F32;
  size_t expected = 0;
  for (const ParamInfo& p : layout_->tensors) {
    if (p.alias || !p.trainable()) continue;
    for (const bool second : {false, true}) {
      const std::string name = p.name + (second ? ".exp_avg_sq" : ".exp_avg");
      const TensorView t = file.get(name);
      DSV3_CHECK(t.dtype == dtype && t.shape == p.shape, "[adamw] ", path, ": tensor ", name, " is ",
                 dtype_name(t.dtype), " ", shape_str(t.shape), ", the model needs ", dtype_name(dtype), " ",
                 shape_str(p.shape));
      // The part of the tensor inside the shard.
      const int64_t b = std::max(p.offset, shard_begin_), e = std::min(p.offset + p.numel, shard_end_);
      if (b < e) {
        const size_t elem = dtype_size(dtype);
        std::memcpy(static_cast<char*>(moment_bytes(second)) + size_t(b - shard_begin_) * elem,
                    static_cast<const char*>(t.data) + size_t(b - p.offset) * elem, size_t(e - b) * elem);
      }
      ++expected;
    }
  }
  DSV3_CHECK(file.entries().size() == expected, "[adamw] ", path, " holds ", file.entries().size(),
             " tensors, the model's optimizer state has ", expected, " (saved for another model?)");
  steps_ = steps;
}

// ---- auxiliary-loss-free load balancing ----

double max_violation(const std::vector<int64_t>& expert_load) {
  if (expert_load.empty()) return 0;
  int64_t total = 0, max_load = 0;
  for (int64_t l : expert_load) {
    total += l;
    max_load = std::max(max_load, l);
  }
  if (total == 0) return 0;
  const double mean = double(total) / double(expert_load.size());
  return (double(max_load) - mean) / mean;
}

void update_correction_biases(TrainParams<float>& params, const std::vector<int64_t>& moe_layers,
                              const std::vector<std::vector<int64_t>>& expert_load, double gamma) {
  DSV3_CHECK(moe_layers.size() == expert_load.size(), "[balance] ", moe_layers.size(), " MoE layers but ",
             expert_load.size(), " load vectors");
  if (gamma == 0) return;
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    const std::string name = cat("model.layers.", moe_layers[i], ".mlp.gate.e_score_correction_bias");
    const ParamInfo* info = params.layout().find(name);
    DSV3_CHECK(info != nullptr, "[balance] the bias update needs ", name,
               " (topk_method noaux_tc); this model has no correction bias: use --bias-gamma 0");
    const std::vector<int64_t>& load = expert_load[i];
    DSV3_CHECK(int64_t(load.size()) == info->numel, "[balance] layer ", moe_layers[i], ": ", load.size(),
               " expert loads for ", info->numel, " experts");
    int64_t total = 0;
    for (int64_t l : load) total += l;
    float* bias = params.data() + info->offset;
    const double mean = double(total) / double(load.size());
    for (size_t e = 0; e < load.size(); ++e) {
      const double diff = mean - double(load[e]);
      const float sign = diff > 0 ? 1.0f : diff < 0 ? -1.0f : 0.0f;
      bias[e] += float(gamma) * sign;
    }
  }
}

}  // namespace dsv3
