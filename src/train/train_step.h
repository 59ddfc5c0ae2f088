// The whole model for training: forward over a batch of token sequences with the loss, and the
// backward pass accumulating every parameter gradient.
//
// A batch is `tokens` [batch, seq + 1]: row b's inputs are tokens[b][0..seq), its main-model targets
// tokens[b][1..seq]. MTP module k (0-based, depth D = options.mtp_depth) runs on the first
// seq_k = seq − 1 − k positions of each row: at position i it reads the previous depth's hidden state
// at i and Emb(t_{i+1+k}) and predicts t_{i+2+k} (TR §2.2; model/mtp.h).
//
// Objective (TR eq. 25, SPEC.md §2):
//   L = mean_i CE_main + λ/D · Σ_k mean_i CE_k + Σ_{MoE layers} balance loss (when enabled)
//
// Activation memory (docs/TRAINING.md). Stored per token and block (main layers and MTP blocks): the
// block input x and x_mid (2H), MLA's q_a, kv_a and o (q_lora + kv_lora + rope + heads·v), and
//   dense FFN: gate·x, up·x (2·intermediate);
//   MoE: router scores (E), chosen experts, weights and sorted positions (3K), the chosen experts' and
//        shared experts' SwiGLU inputs (2·K·moe_inter + 2·n_shared·moe_inter).
// Plus the final-norm output (H), the gradient buffers of the hidden states feeding the heads, and
// the workspace (transient tensors of one block: up-projections, attention scores per thread, expert rows).
// Recomputed: every RMSNorm output, MLA's up-projections (q, k_nope, v), RoPE, attention probabilities,
// SwiGLU outputs, expert inputs; the logits are never stored (the head's backward is fused, loss_train.h).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "model/config.h"
#include "train/block_train.h"
#include "train/loss_train.h"
#include "train/moe_train.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {

struct TrainOptions {
  ComputePrecision precision = ComputePrecision::f32;  // of the GEMMs (train_ops.h)
  int64_t mtp_depth = -1;   // MTP modules in the objective: -1 = num_nextn_predict_layers, 0 = none
  double mtp_lambda = 0.3;  // λ (TR §4.2: 0.3, later 0.1)
  MoeOptions moe;           // balance loss (off by default)
  // In place of the main model's mean cross-entropy: a per-token objective of the targets'
  // log-probabilities (loss_train.h; dsv3 grpo). Needs mtp_depth 0.
  TokenObjective* token_objective = nullptr;
};

struct StepStats {
  double loss = 0;       // the objective L
  double main_loss = 0;  // mean next-token CE of the main model
  std::vector<double> mtp_loss;  // mean CE of each MTP module
  double balance_loss = 0;       // summed over MoE layers
  int64_t tokens = 0;            // main-model targets: batch·seq
  // Per MoE layer run (main layers, then the MTP blocks; Hugging Face layer index in moe_layers):
  // how many (token, slot) assignments each expert received this step. Σ_e load = rows · K.
  std::vector<int64_t> moe_layers;
  std::vector<std::vector<int64_t>> expert_load;
};

// Everything a step stores, sized up front for (config, batch, seq, mtp_depth) in two arenas (T and
// integers); plus the growing Workspace of transient tensors.
template <typename T>
class TrainActivations {
 public:
  TrainActivations(const ModelConfig& config, int64_t batch, int64_t seq, int64_t mtp_depth);
  TrainActivations(const TrainActivations&) = delete;
  TrainActivations& operator=(const TrainActivations&) = delete;

  const ModelConfig& config() const { return config_; }
  SeqShape shape() const { return shape_; }
  int64_t mtp_depth() const { return int64_t(mtp.size()); }
  // Bytes of the stored activations (arenas; the workspace is reported by workspace_bytes()).
  int64_t stored_bytes() const;
  int64_t workspace_bytes() const { return int64_t(ws.capacity()) * int64_t(sizeof(T)); }

  struct Mtp {
    SeqShape shape;
    int32_t* inputs = nullptr;   // [rows] t_{i+1+k}
    int32_t* targets = nullptr;  // [rows] t_{i+2+k}
    T* h_in = nullptr;           // [rows, H] previous depth's hidden state at these positions
    T* x_in = nullptr;           // [rows, H] eh_proj output = block input
    BlockSaved<T> block;
    T* x_out = nullptr;   // [rows, H] block output (input of module k + 1)
    T* dx_out = nullptr;  // [rows, H] gradient of x_out (from this module's head and module k + 1)
  };

  int32_t* inputs = nullptr;   // [rows]
  int32_t* targets = nullptr;  // [rows]
  std::vector<T*> x;           // x[l]: [rows, H] input of main layer l; x[L] the final residual
  std::vector<BlockSaved<T>> layers;
  T* hidden = nullptr;   // [rows, H] final-norm output (head input; MTP module 0's h)
  T* dhidden = nullptr;  // [rows, H] its gradient
  std::vector<Mtp> mtp;
  RopeTable rope;
  Workspace<T> ws;
  // Packed documents (dsv3 sft; empty for pretraining), per token of the batch [batch, seq + 1]: the
  // position in its row where its document starts, and whether predicting it counts in the loss. Each
  // position then attends inside its document with RoPE positions counted from the document's start, and
  // a prediction (main model or MTP module) counts only when its target is marked and in the predicting
  // position's document; the losses are means over the predictions that count.
  std::vector<int32_t> document_start;
  std::vector<uint8_t> loss_mask;
  // The attention's segment starts per row of the main model (k = −1) and of MTP module k (null
  // without documents); filled from document_start at each step.
  const int32_t* segment_start(int64_t k) const {
    return document_start.empty() ? nullptr : segment_starts[size_t(k + 1)].data();
  }
  std::vector<std::vector<int32_t>> segment_starts;
  std::vector<uint16_t> weights_bf16;  // the parameters rounded to bf16 at the start of a bf16/fp8 step
  std::shared_ptr<Fp8Weights> fp8_weights;  // the projection weights in FP8, made at the start of an fp8 step

 private:
  ModelConfig config_;
  SeqShape shape_;
  std::vector<T> values_;
  std::vector<int64_t> integers_;  // int32 and int64 arrays, 8-byte aligned
  std::deque<MoeRemoteSaved<T>> moe_remote_;  // one per MoE block, sized by the rows that arrive (expert parallelism)
};

// Forward pass and loss; stores the activations. tokens: [batch, seq + 1] as the activations were
// sized. logits (optional): [batch·seq, V] main-model logits.
template <typename T>
StepStats train_forward(TrainParams<T>& params, TrainActivations<T>& acts, const int32_t* tokens,
                        const TrainOptions& options, T* logits = nullptr);

// Forward and backward: the loss, and grads += ∂L/∂params (grads must have params' layout; zero it
// between steps unless accumulating micro-batches). The correction biases get no gradient.
template <typename T>
StepStats train_forward_backward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                                 const int32_t* tokens, const TrainOptions& options);

// A pipeline stage's share of the model (dist/pipeline_train.h runs the stages on their ranks): main
// layers [first_layer, end_layer). The part holding layer 0 embeds the tokens; the part holding the last
// layer runs the final norm, the head, the loss and the MTP modules. The MTP modules' embedding is the
// main model's (TR §2.2), which lives with the first part: the last part writes the gradient rows of
// the MTP embeddings, the pipeline carries them down with the activation gradient, and the first part
// adds them into the embedding's gradient before its own, in the order one process adds them — so a
// pipeline's gradients are bit-equal to train_forward_backward's.
struct ModelPart {
  int64_t first_layer = 0, end_layer = 0;
  bool first() const { return first_layer == 0; }
  bool last(const ModelConfig& c) const { return end_layer == c.num_hidden_layers; }
  static ModelPart whole(const ModelConfig& c) { return {0, c.num_hidden_layers}; }
};

// Forward of a part with its loss (on the last part). x_in [rows, H]: the previous part's output (not
// read by the first part); x_out [rows, H] (written unless last). balance_in: the balance losses of the
// layers before this part, continued here in layer order (StepStats::balance_loss is the running sum).
// The head's backward runs here, fused with its forward, as in train_forward_backward.
template <typename T>
StepStats train_part_forward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                             const int32_t* tokens, const TrainOptions& options, const ModelPart& part, const T* x_in,
                             double balance_in, T* x_out);

// Backward of a part after its forward: dx_out [rows, H] is the gradient of x_out (not read by the last
// part); dx_in [rows, H] receives the gradient of x_in (not written by the first part). mtp_demb
// [mtp_embedding_rows, H]: written by the last part, read by the first.
template <typename T>
void train_part_backward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                         const TrainOptions& options, const ModelPart& part, const T* dx_out, T* dx_in, T* mtp_demb);

// Rows of the MTP modules' embedding gradients a pipeline carries (Σ_k batch · (seq − 1 − k)).
int64_t mtp_embedding_rows(int64_t batch, int64_t seq, int64_t mtp_depth);

// Model FLOPs of one train_forward_backward (the MFU numerator): 6 × (matmul parameters used per token)
// × tokens for every projection, router, expert (K routed + shared) and head, plus 3 × the causal
// attention core (scores and weighted sums over the positions <= t, 2·heads·(qk+v)·(t+1) per token in
// the forward). Recomputation is not counted, as MFU convention has it.
double train_step_flops(const ModelConfig& config, int64_t batch, int64_t seq, int64_t mtp_depth);

// train_step_flops of one part of the model (its layers, and the head and MTP modules on the last part).
double part_train_flops(const ModelConfig& config, const ModelPart& part, int64_t batch, int64_t seq,
                        int64_t mtp_depth);

// The MTP depth options.mtp_depth resolves to for this config (checked against num_nextn_predict_layers).
int64_t resolve_mtp_depth(const ModelConfig& config, const TrainOptions& options);

}  // namespace dsv3
