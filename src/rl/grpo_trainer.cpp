#include "rl/grpo_trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "infer/sampler.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace dsv3 {

namespace fs = std::filesystem;

void GrpoRunOptions::validate() const {
  task_options.validate();
  DSV3_CHECK(steps >= 1 && prompts_per_step >= 1 && iterations >= 1, "[grpo] --steps, --prompts-per-step and "
             "--num-iterations must be >= 1");
  DSV3_CHECK(generations >= 2, "[grpo] --num-generations must be >= 2: advantages compare completions of a group");
  DSV3_CHECK(objective.max_completion_length >= 1, "[grpo] --max-completion-length must be >= 1");
  DSV3_CHECK(temperature > 0, "[grpo] --temperature must be > 0 (the objective assumes sampling from π)");
  DSV3_CHECK(lr > 0 && eval_every >= 0 && eval_problems >= 1, "[grpo] --lr must be > 0, --eval-every >= 0, "
             "--eval-problems >= 1");
}

nlohmann::json GrpoStepRecord::to_json() const {
  nlohmann::json j = {{"step", step},
                      {"reward", reward},
                      {"accuracy", accuracy},
                      {"format", format},
                      {"equal_groups", equal_groups},
                      {"completion_length", completion_length},
                      {"truncated", truncated},
                      {"entropy", entropy},
                      {"kl", kl},
                      {"clip_fraction", clip_fraction},
                      {"ratio", ratio},
                      {"loss", loss},
                      {"grad_norm", grad_norm},
                      {"sampler_logp_gap", sampler_logp_gap},
                      {"rollout_tokens_per_s", rollout_tokens_per_s},
                      {"train_tokens_per_s", train_tokens_per_s}};
  if (eval_accuracy) j["eval_accuracy"] = *eval_accuracy;
  return j;
}

std::vector<Rollout> sample_completions(const Model& model, const Tokenizer& tokenizer,
                                        const std::vector<std::vector<int32_t>>& prompts, int64_t per_prompt,
                                        int64_t max_tokens, double temperature, uint64_t seed) {
  const ModelConfig& c = model.config;
  const int64_t V = c.vocab_size, n = int64_t(prompts.size()) * per_prompt;
  const std::optional<int32_t> eos = tokenizer.eos_id();
  DSV3_CHECK(eos.has_value(), "[grpo] the tokenizer has no end-of-sentence token to stop completions at");
  std::vector<std::unique_ptr<KVCache>> caches;
  std::vector<Sampler> samplers;
  for (int64_t i = 0; i < n; ++i) {
    caches.push_back(std::make_unique<KVCache>(c, int64_t(prompts[size_t(i / per_prompt)].size()) + max_tokens));
    SamplingParams p;
    p.temperature = float(temperature);
    p.seed = splitmix64(seed ^ uint64_t(i));
    p.allowed_ids = tokenizer.decodable_ids();
    samplers.emplace_back(p);
  }
  std::vector<Rollout> out(static_cast<size_t>(n));
  std::vector<float> logits(size_t(n * V));
  std::vector<int32_t> next(static_cast<size_t>(n));
  std::vector<int64_t> active;
  for (int64_t i = 0; i < n; ++i) active.push_back(i);
  ForwardOptions fo;
  Scratch& scratch = caches[0]->scratch();
  for (int64_t t = 0; !active.empty(); ++t) {
    std::vector<BatchItem> items;
    for (int64_t i : active) {
      BatchItem item;
      item.cache = caches[size_t(i)].get();
      if (t == 0) {
        const std::vector<int32_t>& p = prompts[size_t(i / per_prompt)];
        item.tokens = p.data();
        item.n = int64_t(p.size());
      } else {
        item.tokens = &next[size_t(i)];
        item.n = 1;
      }
      item.logits = logits.data() + i * V;
      items.push_back(item);
    }
    forward_batch(model, items.data(), int64_t(items.size()), fo, scratch);
    std::vector<int64_t> still;
    for (int64_t i : active) {
      const float* l = logits.data() + i * V;
      const int32_t id = samplers[size_t(i)].sample(l, V);
      const double lse = log_sum_exp(l, V);
      double entropy = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double lp = double(l[v]) - lse;
        entropy -= std::exp(lp) * lp;
      }
      Rollout& r = out[size_t(i)];
      r.completion.push_back(id);
      r.logp.push_back(double(l[id]) - lse);
      r.entropy += entropy;
      next[size_t(i)] = id;
      if (id == *eos) continue;
      if (int64_t(r.completion.size()) >= max_tokens) {
        r.truncated = true;
        continue;
      }
      still.push_back(i);
    }
    active.swap(still);
  }
  return out;
}

std::string completion_text(const Tokenizer& tokenizer, const Rollout& rollout) {
  std::vector<int32_t> ids = rollout.completion;
  if (!ids.empty() && ids.back() == tokenizer.eos_id()) ids.pop_back();
  return tokenizer.decode(ids);
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Loop {
  const GrpoRunOptions& o;
  Tokenizer tokenizer;
  TrainParams<float> params, reference;
  AdamW optimizer;
  std::vector<TaskProblem> train_problems, test_problems;

  explicit Loop(const GrpoRunOptions& options)
      : o(options),
        tokenizer(Tokenizer::from_file(options.model_dir + "/tokenizer.json")),
        params(load_train_params<float>(options.model_dir)),
        reference(params.layout_ptr()),
        optimizer(params.layout_ptr(), [&] {
          AdamWOptions a;
          a.weight_decay = options.weight_decay;
          a.clip_norm = options.clip;
          return a;
        }()) {
    DSV3_CHECK(tokenizer.eos_id().has_value(), "[grpo] ", options.model_dir, "/tokenizer.json has no EOS token");
    std::copy(params.data(), params.data() + params.size(), reference.data());
    const int64_t needed = o.steps * o.prompts_per_step;
    train_problems = make_task_problems(o.task, o.task_options, TaskSplit::train, needed, o.seed);
    test_problems = make_task_problems(o.task, o.task_options, TaskSplit::test, o.eval_problems, o.seed);
  }

  std::vector<int32_t> prompt_ids(const TaskProblem& p) const {
    return encode_chat(tokenizer, {{"user", p.prompt}}, /*add_generation_prompt=*/true, o.chat_template);
  }

  std::unique_ptr<Model> inference_model() const {
    const std::string dir = o.out_dir + "/policy";
    save_params(params, dir, DType::F32);
    return load_model(dir);
  }

  double evaluate() const {
    const std::unique_ptr<Model> model = inference_model();
    std::vector<std::vector<int32_t>> prompts;
    for (const TaskProblem& p : test_problems) prompts.push_back(prompt_ids(p));
    const std::vector<Rollout> replies =  // greedy
        sample_completions(*model, tokenizer, prompts, 1, o.objective.max_completion_length, 0.0, o.seed);
    double correct = 0;
    for (size_t i = 0; i < replies.size(); ++i)
      correct += score_task_reply(test_problems[i], completion_text(tokenizer, replies[i])).accuracy;
    return correct / double(replies.size());
  }

  GrpoStepRecord step(int64_t s) {
    GrpoStepRecord rec;
    rec.step = s + 1;
    const int64_t P = o.prompts_per_step, G = o.generations, n = P * G;
    // 1–2. Rollouts with the inference engine.
    const auto rollout_start = std::chrono::steady_clock::now();
    std::vector<const TaskProblem*> problems;
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < P; ++i) {
      problems.push_back(&train_problems[size_t(s * P + i)]);
      prompts.push_back(prompt_ids(*problems.back()));
    }
    std::vector<Rollout> rollouts;
    {
      const std::unique_ptr<Model> model = inference_model();
      rollouts = sample_completions(*model, tokenizer, prompts, G, o.objective.max_completion_length, o.temperature,
                                    splitmix64(o.seed) ^ uint64_t(s));
    }
    int64_t sampled = 0;
    for (const Rollout& r : rollouts) sampled += int64_t(r.completion.size());
    rec.rollout_tokens_per_s = double(sampled) / seconds_since(rollout_start);
    // 3. Rewards and advantages.
    std::vector<double> rewards;
    double entropy = 0;
    for (int64_t i = 0; i < n; ++i) {
      const Rollout& r = rollouts[size_t(i)];
      const TaskReward reward = score_task_reply(*problems[size_t(i / G)], completion_text(tokenizer, r));
      rewards.push_back(reward.total);
      rec.reward += reward.total / double(n);
      rec.accuracy += reward.accuracy / double(n);
      rec.format += reward.format / double(n);
      rec.completion_length += double(r.completion.size()) / double(n);
      rec.truncated += (r.truncated ? 1.0 : 0.0) / double(n);
      entropy += r.entropy;
    }
    rec.entropy = entropy / double(std::max<int64_t>(1, sampled));
    for (int64_t g = 0; g < P; ++g) {
      bool equal = true;
      for (int64_t i = 1; i < G; ++i) equal = equal && rewards[size_t(g * G + i)] == rewards[size_t(g * G)];
      rec.equal_groups += (equal ? 1.0 : 0.0) / double(P);
    }
    GrpoBatch batch;
    batch.advantage = group_advantages(rewards, G, o.objective.loss != GrpoLoss::dr_grpo);
    // The training batch: one row per sequence, prompt + completion + padding; completion tokens counted.
    int64_t longest = 0;
    for (int64_t i = 0; i < n; ++i)
      longest = std::max<int64_t>(longest, int64_t(prompts[size_t(i / G)].size() + rollouts[size_t(i)].completion.size()));
    const int64_t S = longest - 1;
    TrainActivations<float> acts(params.config(), n, S, 0);
    std::vector<int32_t> tokens(size_t(n * (S + 1)), 0);
    acts.document_start.assign(tokens.size(), 0);
    acts.loss_mask.assign(tokens.size(), 0);
    batch.sequence.assign(size_t(n * S), -1);
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<int32_t>& p = prompts[size_t(i / G)];
      const Rollout& r = rollouts[size_t(i)];
      const bool counted = !(o.mask_truncated && r.truncated);
      int32_t* row = tokens.data() + i * (S + 1);
      std::copy(p.begin(), p.end(), row);
      std::copy(r.completion.begin(), r.completion.end(), row + p.size());
      const int64_t end = int64_t(p.size() + r.completion.size());
      for (int64_t t = end; t <= S; ++t) acts.document_start[size_t(i * (S + 1) + t)] = int32_t(end);
      for (int64_t t = int64_t(p.size()); t < end && counted; ++t) {
        acts.loss_mask[size_t(i * (S + 1) + t)] = 1;
        batch.sequence[size_t(i * S + t - 1)] = int32_t(i);
      }
      batch.length.push_back(counted ? int64_t(r.completion.size()) : 0);
    }
    TrainOptions to;
    to.mtp_depth = 0;
    to.precision = o.precision;
    batch.old_logp.assign(size_t(n * S), 0.0);
    batch.ref_logp.assign(size_t(n * S), 0.0);
    const auto train_start = std::chrono::steady_clock::now();
    {
      LogProbRecorder old(batch.old_logp);
      to.token_objective = &old;
      train_forward(params, acts, tokens.data(), to);
      if (o.objective.beta > 0) {
        LogProbRecorder ref(batch.ref_logp);
        to.token_objective = &ref;
        train_forward(reference, acts, tokens.data(), to);
      } else {
        batch.ref_logp = batch.old_logp;
      }
    }
    // The classic split-engine bug, measured: the sampler's log π against the trainer's, same weights.
    for (int64_t i = 0; i < n; ++i) {
      const size_t plen = prompts[size_t(i / G)].size();
      const Rollout& r = rollouts[size_t(i)];
      for (size_t t = 0; t < r.completion.size(); ++t)
        rec.sampler_logp_gap = std::max(rec.sampler_logp_gap,
                                        std::fabs(r.logp[t] - batch.old_logp[size_t(i * S + int64_t(plen + t) - 1)]));
    }
    // 4. Optimizer steps on the objective.
    GrpoObjective objective(o.objective, batch);
    to.token_objective = &objective;
    TrainParams<float> grads(params.layout_ptr());
    for (int64_t it = 0; it < o.iterations; ++it) {
      grads.zero();
      const StepStats st = train_forward_backward(params, grads, acts, tokens.data(), to);
      const OptimizerStepStats os = optimizer.step(params, grads, o.lr, 1.0);
      rec.loss = st.loss;
      rec.grad_norm = os.grad_norm;
      rec.kl = objective.mean_kl();
      rec.clip_fraction = objective.clip_fraction();
      rec.ratio = objective.mean_ratio();
    }
    rec.train_tokens_per_s = double(n * (S + 1) * o.iterations) / seconds_since(train_start);
    return rec;
  }

  void save() const {
    save_params(params, o.out_dir, DType::F32);
    fs::copy_file(o.model_dir + "/tokenizer.json", o.out_dir + "/tokenizer.json", fs::copy_options::overwrite_existing);
    if (fs::is_regular_file(o.model_dir + "/tokenizer_config.json"))
      fs::copy_file(o.model_dir + "/tokenizer_config.json", o.out_dir + "/tokenizer_config.json",
                    fs::copy_options::overwrite_existing);
    fs::remove_all(o.out_dir + "/policy");
  }
};

}  // namespace

void run_grpo(const GrpoRunOptions& o, const std::function<void(const GrpoStepRecord&)>& on_step) {
  o.validate();
  DSV3_CHECK(fs::is_regular_file(o.model_dir + "/config.json") && fs::is_regular_file(o.model_dir + "/tokenizer.json"),
             "[grpo] ", o.model_dir, " needs config.json and tokenizer.json (a dsv3 checkpoint, e.g. from dsv3 sft)");
  fs::create_directories(o.out_dir);
  Loop loop(o);
  const std::string metrics_path = o.metrics_path.empty() ? o.out_dir + "/metrics.jsonl" : o.metrics_path;
  std::ofstream metrics(metrics_path, std::ios::trunc);
  DSV3_CHECK(metrics.good(), "[grpo] cannot write ", metrics_path);
  nlohmann::json header = {{"type", "grpo"},
                           {"model", o.model_dir},
                           {"task", task_kind_name(o.task)},
                           {"num_generations", o.generations},
                           {"prompts_per_step", o.prompts_per_step},
                           {"beta", o.objective.beta},
                           {"epsilon", o.objective.epsilon},
                           {"epsilon_high", o.objective.high()},
                           {"loss_type", grpo_loss_name(o.objective.loss)},
                           {"num_iterations", o.iterations},
                           {"max_completion_length", o.objective.max_completion_length},
                           {"lr", o.lr}};
  metrics << header.dump() << "\n";
  GrpoStepRecord start;
  start.eval_accuracy = loop.evaluate();
  metrics << nlohmann::json{{"step", 0}, {"eval_accuracy", *start.eval_accuracy}}.dump() << "\n";
  on_step(start);
  for (int64_t s = 0; s < o.steps; ++s) {
    GrpoStepRecord rec = loop.step(s);
    if (s + 1 == o.steps || (o.eval_every > 0 && (s + 1) % o.eval_every == 0)) rec.eval_accuracy = loop.evaluate();
    metrics << rec.to_json().dump() << "\n";
    metrics.flush();
    on_step(rec);
  }
  loop.save();
}

}  // namespace dsv3
