// The named weights of one model: every safetensors file of an HF directory (single file or
// sharded with model.safetensors.index.json), checked against the ModelSpec's shapes; or random
// tensors with no bytes, drawn by the backend that loads them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/safetensors.h"

namespace muxserve::model {

// A tensor the spec requires, by HF name, with its shape (rows first, as stored).
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor of a Llama-family model with this spec, in a fixed order: embeddings, each layer
// (norms, attention, MLP), the final norm, then lm_head unless the embeddings are tied.
std::vector<ExpectedTensor> ExpectedTensors(const ModelSpec& spec);

class Weights {
 public:
  // Opens every shard and checks that each tensor a Llama-family model needs is present with the
  // shape the spec implies (names as in HF: model.layers.{i}.self_attn.q_proj.weight, ...).
  static absl::StatusOr<std::unique_ptr<Weights>> Load(const std::filesystem::path& model_dir,
                                                       const ModelSpec& spec);
  // Every tensor the spec requires, as bf16 with no data and TensorInfo::random set: the scales
  // of a synthetic model (SyntheticWeightInit), each tensor seeded by SyntheticTensorSeed(seed,
  // its name).
  static absl::StatusOr<std::unique_ptr<Weights>> Random(const ModelSpec& spec, uint64_t seed);

  // The tensor with this HF name, or NOT_FOUND.
  absl::StatusOr<const TensorInfo*> Get(const std::string& name) const;
  bool Has(const std::string& name) const;
  int64_t TotalBytes() const;  // random tensors count their size as bf16 on a file
  // Every tensor of every shard by name, including any the spec does not need.
  const std::map<std::string, const TensorInfo*>& tensors() const { return index_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorInfo> random_tensors_;  // what Random made; index_ points here
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace muxserve::model
