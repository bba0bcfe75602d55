#include "muxserve/server/model_loader.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/model/synthetic.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

namespace fs = std::filesystem;

// Written beside a synthetic model's files: what they were made from.
constexpr char kSyntheticMarker[] = "muxserve_synthetic.json";

std::string SyntheticIdentity(const config::SyntheticSpec& synthetic, DType weight_dtype) {
  nlohmann::json identity = {
      {"config", nlohmann::json::parse(model::ModelSpecToJson(synthetic.spec))},
      {"seed", synthetic.seed},
      {"weight_dtype", std::string(DTypeName(weight_dtype))},
      {"weights", synthetic.device_weights ? "device" : "file"},
  };
  return identity.dump(2) + "\n";
}

std::string ReadFileOrEmpty(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::Status FilesystemError(std::string_view what, const fs::path& path,
                             const std::error_code& error) {
  return absl::UnavailableError(
      absl::StrCat(AsAbsl(what), " '", path.string(), "': ", error.message()));
}

}  // namespace

absl::StatusOr<fs::path> EnsureSyntheticModel(const fs::path& synthetic_dir,
                                              const std::string& name,
                                              const config::SyntheticSpec& synthetic,
                                              DType weight_dtype) {
  const fs::path target = synthetic_dir / name;
  const std::string identity = SyntheticIdentity(synthetic, weight_dtype);
  std::error_code error;
  if (fs::is_regular_file(target / "config.json", error) &&
      ReadFileOrEmpty(target / kSyntheticMarker) == identity) {
    return target;
  }

  static std::atomic<int> attempt{0};
  const fs::path partial =
      synthetic_dir / absl::StrCat(".", name, ".partial-", getpid(), "-", attempt++);
  fs::remove_all(partial, error);
  if (!fs::create_directories(partial, error) && error) {
    return FilesystemError("cannot create", partial, error);
  }
  model::SyntheticModelOptions options;
  options.spec = synthetic.spec;
  options.spec.dtype = weight_dtype;
  options.seed = synthetic.seed;
  options.weight_dtype = weight_dtype;
  options.write_weights = !synthetic.device_weights;
  absl::Status written = model::WriteSyntheticModel(partial, options);
  if (written.ok()) {
    std::ofstream marker(partial / kSyntheticMarker, std::ios::binary);
    marker << identity;
    marker.close();
    if (!marker)
      written = absl::UnavailableError(
          absl::StrCat("cannot write '", (partial / kSyntheticMarker).string(), "'"));
  }
  if (!written.ok()) {
    fs::remove_all(partial, error);
    return Annotate(written, absl::StrCat("writing synthetic model '", name, "'"));
  }
  if (fs::exists(target, error)) {
    spdlog::info(
        "model {}: rewriting {}: its files were not made from this spec, seed, dtype and weights "
        "mode",
        name, target.string());
    fs::remove_all(target, error);
    if (error) return FilesystemError("cannot remove", target, error);
  }
  fs::rename(partial, target, error);
  if (error) {
    fs::remove_all(partial, error);
    return FilesystemError("cannot move the synthetic model into", target, error);
  }
  spdlog::info("model {}: wrote synthetic model to {}", name, target.string());
  return target;
}

absl::StatusOr<PreparedModel> PrepareModel(const config::ModelConfig& model_config,
                                           const fs::path& synthetic_dir, config::Backend backend) {
  PreparedModel prepared;
  if (model_config.synthetic) {
    const DType weight_dtype = model_config.dtype.value_or(model_config.synthetic->spec.dtype);
    ASSIGN_OR_RETURN(prepared.dir, EnsureSyntheticModel(synthetic_dir, model_config.name,
                                                        *model_config.synthetic, weight_dtype));
    if (model_config.synthetic->device_weights) {
      prepared.random_weights_seed = model_config.synthetic->seed;
    }
  } else {
    prepared.dir = model_config.path;
  }
  ASSIGN_OR_RETURN(prepared.spec, model::LoadModelSpec(prepared.dir));
  ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tokenizer,
                   model::Tokenizer::Load(prepared.dir));
  if (tokenizer->vocab_size() > prepared.spec.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(prepared.dir.string(), ": the tokenizer has ", tokenizer->vocab_size(),
                     " tokens but config.json has vocab_size ", prepared.spec.vocab_size));
  }
  prepared.tokenizer = std::move(tokenizer);

  if (!model_config.chat_template.empty()) {
    ASSIGN_OR_RETURN(prepared.chat_template,
                     model::ChatTemplate::FromName(model_config.chat_template));
  } else if (prepared.tokenizer->chat_template().empty()) {
    prepared.chat_unavailable_reason =
        "the tokenizer has no chat_template and the config names none (set chat_template)";
  } else {
    absl::StatusOr<model::ChatTemplate> recognized =
        model::ChatTemplate::Recognize(prepared.tokenizer->chat_template());
    if (recognized.ok()) {
      prepared.chat_template = *recognized;
    } else {
      prepared.chat_unavailable_reason = std::string(recognized.status().message());
    }
  }

  // The CPU backend computes in float32. The CUDA backend computes in 16 bits: in the configured
  // dtype, else in the checkpoint's, a float32 checkpoint in bfloat16 (the weights are converted
  // as they load).
  if (backend == config::Backend::kCpu) {
    prepared.dtype = DType::kFloat32;
  } else {
    if (model_config.dtype == DType::kFloat32) {
      return absl::InvalidArgumentError(
          "dtype float32 is not supported by the CUDA backend; use bfloat16 or float16");
    }
    prepared.dtype = prepared.spec.GpuDType(model_config.dtype);
  }
  const int64_t max_position = prepared.spec.max_position_embeddings;
  prepared.max_context = model_config.max_context > 0 ? model_config.max_context : max_position;
  if (max_position > 0 && prepared.max_context > max_position) {
    return absl::InvalidArgumentError(absl::StrCat("max_context ", prepared.max_context,
                                                   " exceeds the model's max_position_embeddings ",
                                                   max_position));
  }
  if (prepared.max_context <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prepared.dir.string(),
        ": config.json has no max_position_embeddings; set max_context in the config"));
  }
  return prepared;
}

}  // namespace muxserve::server
