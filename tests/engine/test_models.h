// Synthetic models written into a temporary folder for engine tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/synthetic.h"

namespace muxserve::engine::testing {

inline model::ModelSpec TinySpec(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads,
                                 int64_t intermediate) {
  model::ModelSpec spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 320;
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = 512;
  spec.rms_norm_eps = 1e-5;
  spec.dtype = DType::kFloat32;
  spec.eos_token_ids = {258, 256};
  return spec;
}

// Writes the model under the gtest temp dir.
inline std::filesystem::path WriteTinyModel(const std::string& name, const model::ModelSpec& spec,
                                            uint64_t seed) {
  // ctest runs tests as parallel processes: each writes its own copy.
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("muxserve_engine_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const absl::Status status = model::WriteSyntheticModel(
      dir, {.spec = spec, .seed = seed, .weight_dtype = DType::kFloat32});
  EXPECT_TRUE(status.ok()) << status;
  return dir;
}

}  // namespace muxserve::engine::testing
