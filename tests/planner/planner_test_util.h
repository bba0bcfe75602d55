// Llama shapes for the planner tests (the published 7B/13B/30B/65B configs).
#pragma once

#include <cstdint>

#include "muxserve/planner/cost_model.h"

namespace muxserve::planner::testing_util {

inline ModelShape LlamaShape(int64_t layers, int64_t hidden, int64_t heads, int64_t intermediate) {
  ModelShape shape;
  model::ModelSpec& spec = shape.spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 32000;
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = 2048;
  shape.dtype = DType::kBFloat16;
  return shape;
}

inline ModelShape Llama7B() { return LlamaShape(32, 4096, 32, 11008); }
inline ModelShape Llama13B() { return LlamaShape(40, 5120, 40, 13824); }
inline ModelShape Llama30B() { return LlamaShape(60, 6656, 52, 17920); }
inline ModelShape Llama65B() { return LlamaShape(80, 8192, 64, 22016); }

}  // namespace muxserve::planner::testing_util
