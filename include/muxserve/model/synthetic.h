// Writes a synthetic HF model directory (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json, generation_config.json) with seeded random weights, for tests,
// benchmarks and the default daemon config: no model hub is reachable from our machines.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "muxserve/model/model_spec.h"

namespace muxserve::model {

struct SyntheticModelOptions {
  ModelSpec spec;  // any Llama-family shape; vocab_size >= the synthetic tokenizer's
  uint64_t seed = 0;
  DType weight_dtype = DType::kBFloat16;
  // False: no model.safetensors; the loader draws the weights itself (Weights::Random).
  bool write_weights = true;
};

// The normal distribution a synthetic model's tensor `name` is drawn from (the scales are
// explained in synthetic.cc).
struct WeightInit {
  double mean = 0;
  double std = 0;
};
WeightInit SyntheticWeightInit(const std::string& name, const ModelSpec& spec);

// The seed of one tensor's values, from the model's seed and the tensor's name, so that a
// tensor's values do not depend on which other tensors the model has.
uint64_t SyntheticTensorSeed(uint64_t model_seed, const std::string& name);

// The synthetic tokenizer: 256 byte-level tokens (GPT-2 byte-to-unicode) then the ChatML
// specials <|endoftext|>, <|im_start|>, <|im_end|>. Models need vocab_size >= this.
inline constexpr int64_t kSyntheticTokenizerSize = 259;

// Writes all files (model.safetensors only with options.write_weights); the same options always
// give the same bytes. config.json gets the weights'
// dtype and the synthetic tokenizer's ids (no BOS; EOS <|im_end|> and <|endoftext|>), whatever
// options.spec says of them; an empty model_type means "llama".
[[nodiscard]] absl::Status WriteSyntheticModel(const std::filesystem::path& dir,
                                               const SyntheticModelOptions& options);

}  // namespace muxserve::model
