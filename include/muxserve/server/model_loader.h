// Turns a model entry of the config into what the router and the engine need: synthetic models
// are written to disk once, then the spec, tokenizer and chat template are read. The weights
// themselves are loaded by the engine (UnitEngine::AddLlm).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"
#include "muxserve/config/config.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"

namespace muxserve::server {

struct PreparedModel {
  std::filesystem::path dir;
  model::ModelSpec spec;
  std::shared_ptr<const model::Tokenizer> tokenizer;
  std::optional<model::ChatTemplate> chat_template;
  std::string chat_unavailable_reason;  // why chat_template is empty
  DType dtype = DType::kFloat32;        // compute dtype on the backend
  int64_t max_context = 0;
  // Set for synthetic models with `weights: device`: dir has no safetensors and the engine draws
  // the weights with this seed (engine::LlmSetup::random_weights_seed).
  std::optional<uint64_t> random_weights_seed;
};

// The directory of a synthetic model, `synthetic_dir`/`name`. Its files are written when they are
// missing or were made from another shape, seed, dtype or weights mode: into a temporary directory
// renamed into place at the end, so an interrupted write never leaves half a model behind. With
// `device_weights` only the config and tokenizer files are written (no model.safetensors).
absl::StatusOr<std::filesystem::path> EnsureSyntheticModel(
    const std::filesystem::path& synthetic_dir, const std::string& name,
    const config::SyntheticSpec& synthetic, DType weight_dtype);

// Prepares one model for `backend` (kCpu or kCuda, already resolved). Errors name the model.
absl::StatusOr<PreparedModel> PrepareModel(const config::ModelConfig& model,
                                           const std::filesystem::path& synthetic_dir,
                                           config::Backend backend);

}  // namespace muxserve::server
