// One decoder block (DeepSeek's inference/model.py class Block), shared by the main layers and the
// MTP modules:  x = x + attn(input_layernorm(x));  x = x + ffn(post_attention_layernorm(x)),
// where ffn is the dense MLP or DeepSeekMoE.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/mla.h"
#include "model/weights.h"

namespace dsv3 {

// x: [chunk.n, H] residual stream, updated in place. Must not be one of scratch's buffers other than
// `x`. Attention reads/writes layer `cache_layer` of each segment's cache.
void block_forward(const ModelConfig& config, const LayerWeights& w, int64_t cache_layer, const ChunkContext& chunk,
                   Scratch& scratch, float* x);

}  // namespace dsv3
