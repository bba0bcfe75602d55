// The shape of one Llama-family model, read from an HF config.json. Every size the rest of the
// system needs (weight bytes, KV bytes per token, FLOPs per token) derives from this struct.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"

namespace muxserve::model {

enum class RopeScaling : uint8_t { kNone, kLinear, kLlama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;                   // linear and llama3
  double low_freq_factor = 1.0;          // llama3
  double high_freq_factor = 4.0;         // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct ModelSpec {
  std::string architecture;  // e.g. "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"
  std::string model_type;    // "llama", "mistral", "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless config.json says otherwise
  int64_t max_position_embeddings = 0;
  // Sliding-window attention span from config.json (Mistral v0.1: 4096); 0 means full attention.
  int64_t sliding_window = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool qkv_bias = false;  // Qwen2, or attention_bias: true
  bool tie_word_embeddings = false;
  DType dtype = DType::kBFloat16;      // torch_dtype in config.json
  std::vector<int32_t> bos_token_ids;  // may be empty
  std::vector<int32_t> eos_token_ids;  // config.json eos_token_id: an int or a list

  int64_t q_size() const { return num_heads * head_dim; }
  int64_t kv_size() const { return num_kv_heads * head_dim; }
  // Parameters and bytes of the weights, counting lm_head once even when tied.
  int64_t NumParameters() const;
  int64_t WeightBytes(DType weight_dtype) const;
  // K and V of one token over all layers.
  int64_t KvBytesPerToken(DType kv_dtype) const;
  // Forward FLOPs for one token at a given context length (2 per multiply-add).
  double FlopsPerToken(int64_t context_len) const;
  // What a GPU computes this model in: `configured` when set (float32 is the loader's to refuse),
  // else the checkpoint's dtype, a float32 checkpoint in bfloat16. One rule for the loader and
  // for every estimate of its memory.
  DType GpuDType(std::optional<DType> configured) const;
};

// Parses config.json. Errors name the file and the key.
absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& json_text, const std::string& origin);
absl::StatusOr<ModelSpec> LoadModelSpec(const std::filesystem::path& model_dir);
// Serializes to an HF-compatible config.json (used by the synthetic-model writer).
std::string ModelSpecToJson(const ModelSpec& spec);

}  // namespace muxserve::model
