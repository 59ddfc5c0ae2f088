// A dsv3 model as llama.cpp's `deepseek2` GGUF: the architecture llama.cpp runs DeepSeek-V2/V2.5/V3/R1
// under, laid out as its convert_hf_to_gguf.py (DeepseekV2Model) writes it and its deepseek2 loader
// (src/models/deepseek2.cpp) reads it. Checked against llama.cpp itself by tests/cli/export_gguf.sh.
//
// What changes on the way (names: Hugging Face -> GGUF; GGUF lists dimensions innermost first, so a
// row-major [out, in] weight is ne = {in, out} with the same bytes):
//   model.embed_tokens / lm_head / model.norm          -> token_embd / output / output_norm
//   layers.L.input_layernorm, post_attention_layernorm -> blk.L.attn_norm, ffn_norm
//   self_attn.q_a_proj, q_a_layernorm, q_b_proj (q_proj) -> attn_q_a, attn_q_a_norm, attn_q_b (attn_q)
//   self_attn.kv_a_proj_with_mqa, kv_a_layernorm, o_proj -> attn_kv_a_mqa, attn_kv_a_norm, attn_output
//   self_attn.kv_b_proj [heads·(nope+v), kv_lora] is split per head for llama.cpp's absorbed MLA:
//     attn_k_b ne {nope, kv_lora, heads}: head h's K rows transposed, k_b[h][c][d] = kv_b[h·(nope+v)+d][c]
//     attn_v_b ne {kv_lora, v, heads}:    head h's V rows as they are, v_b[h][j][c] = kv_b[h·(nope+v)+nope+j][c]
//   mlp.gate/up/down_proj (dense layers)               -> ffn_gate, ffn_up, ffn_down
//   mlp.gate.weight, mlp.gate.e_score_correction_bias  -> ffn_gate_inp, exp_probs_b.bias
//   mlp.experts.E.{gate,up,down}_proj, stacked over E  -> ffn_{gate,up,down}_exps ne {in, out, n_experts}
//   mlp.shared_experts.{gate,up,down}_proj             -> ffn_{gate,up,down}_shexp
// Tensors are written in F32 or BF16 (--type); as llama.cpp's converter does, norms, 1-D tensors and the
// router (ffn_gate_inp) stay F32 whatever the type. FP8 weights are dequantized with their block scales
// first (exact in F32; rounded once to BF16 in BF16). MTP modules are not written: llama.cpp's
// deepseek2 converter skips them too.
#pragma once

#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/tokenizer.h"
#include "model/model.h"

namespace dsv3 {

// Why llama.cpp's deepseek2 cannot run this config the way dsv3 does, one sentence each naming the
// config.json field; empty when it can.
std::vector<std::string> deepseek2_unsupported(const ModelConfig& config);

// One tensor of the export. Its data is produced as f32 rows: the tensor seen as a row-major matrix
// [numel / ne[0], ne[0]], rows [begin, end) into out (thread-safe).
struct ExportTensor {
  std::string name;
  std::vector<int64_t> ne;
  GgmlType type = GgmlType::F32;
  std::function<void(int64_t begin, int64_t end, float* out)> rows;
};

// The tensors of `model` in llama.cpp's names, order and layout, weights in `type` (F32 or BF16).
std::vector<ExportTensor> deepseek2_tensors(const Model& model, GgmlType type);

// The tokenizer as llama.cpp's BPE ("gpt2") vocabulary with DeepSeek-V3's pre-tokenizer: one entry per id
// in [0, vocab_size) (ids the tokenizer lacks become "[PAD<id>]", type unused), the merges of
// `tokenizer_json_path`, BOS/EOS and add_bos_token from tokenizer_config.json, and its chat template.
// Added tokens are control tokens when marked special or when spelled like DeepSeek's markers
// ("<｜...｜>", "<|...|>"), as llama.cpp's converter decides; other added tokens are user-defined.
void add_deepseek2_tokenizer(GgufWriter& writer, const Tokenizer& tokenizer, const std::string& tokenizer_json_path,
                             const ModelConfig& config);

struct Deepseek2Export {
  GgmlType type = GgmlType::BF16;
  std::string name;              // general.name
  std::string tokenizer_json;    // the model's tokenizer.json (llama.cpp needs a vocabulary)
  bool progress = true;          // a progress line on stderr while tensors are written
};

struct Deepseek2ExportResult {
  size_t tensors = 0;
  uint64_t bytes = 0;       // file size
  int64_t skipped_mtp = 0;  // MTP modules left out
};

// Writes `model` to `path` as a deepseek2 GGUF. Throws dsv3::Error listing deepseek2_unsupported(config)
// when it cannot be expressed.
Deepseek2ExportResult write_deepseek2_gguf(const Model& model, const std::string& path, const Deepseek2Export& options);

}  // namespace dsv3
