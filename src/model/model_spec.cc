#include "muxserve/model/model_spec.h"

#include <array>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"

namespace muxserve::model {
namespace {

struct Family {
  std::string_view model_type;
  std::string_view architecture;
  int64_t default_max_position;  // HF's config class default when config.json omits it
};

constexpr std::array<Family, 3> kFamilies = {{
    {"llama", "LlamaForCausalLM", 2048},
    {"mistral", "MistralForCausalLM", 131072},
    {"qwen2", "Qwen2ForCausalLM", 32768},
}};

// Bound on every size, so that parameter counts stay far from int64 overflow.
constexpr int64_t kMaxDimension = int64_t{1} << 22;

const Family* FindFamilyByType(std::string_view model_type) {
  for (const Family& family : kFamilies) {
    if (family.model_type == model_type) return &family;
  }
  return nullptr;
}

bool IsKnownArchitecture(std::string_view architecture) {
  for (const Family& family : kFamilies) {
    if (family.architecture == architecture) return true;
  }
  return false;
}

// bos_token_id / eos_token_id: an integer, a list of integers, or null.
absl::StatusOr<std::vector<int32_t>> ReadTokenIds(const JsonObjectReader& reader,
                                                  std::string_view key, int64_t vocab_size) {
  std::vector<int32_t> ids;
  const nlohmann::json* value = reader.Find(key);
  if (value == nullptr) return ids;
  std::vector<nlohmann::json> items;
  if (value->is_array()) {
    items.assign(value->begin(), value->end());
  } else {
    items.push_back(*value);
  }
  for (const nlohmann::json& item : items) {
    std::optional<int64_t> id = JsonToInt64(item);
    if (!id.has_value()) {
      return reader.Error(key, absl::StrCat("expected an integer or a list of integers, got ",
                                            JsonSnippet(*value)));
    }
    if (*id < 0 || *id >= vocab_size) {
      return reader.Error(
          key, absl::StrCat("token id ", *id, " is outside the vocabulary [0, ", vocab_size, ")"));
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

absl::StatusOr<RopeConfig> ReadRope(const JsonObjectReader& reader) {
  RopeConfig rope;
  ASSIGN_OR_RETURN(std::optional<double> theta, reader.OptionalDouble("rope_theta"));
  if (theta.has_value()) rope.theta = *theta;
  if (!(rope.theta > 0)) return reader.Error("rope_theta", "must be positive");

  const nlohmann::json* scaling = reader.Find("rope_scaling");
  if (scaling == nullptr) return rope;
  if (!scaling->is_object()) {
    return reader.Error("rope_scaling",
                        absl::StrCat("expected an object or null, got ", JsonTypeName(*scaling)));
  }
  JsonObjectReader fields = reader.Nested(*scaling, "rope_scaling");
  std::string type_key = fields.Has("rope_type") ? "rope_type" : "type";
  ASSIGN_OR_RETURN(std::optional<std::string> type, fields.OptionalString(type_key));
  if (!type.has_value())
    return fields.Error("rope_type", "missing (expected 'rope_type' or 'type')");

  auto required_positive = [&](std::string_view key) -> absl::StatusOr<double> {
    ASSIGN_OR_RETURN(std::optional<double> value, fields.OptionalDouble(key));
    if (!value.has_value()) return fields.Error(key, "missing");
    if (!(*value > 0)) return fields.Error(key, "must be positive");
    return *value;
  };
  if (*type == "default") return rope;
  if (*type == "linear") {
    rope.scaling = RopeScaling::kLinear;
    ASSIGN_OR_RETURN(rope.factor, required_positive("factor"));
    return rope;
  }
  if (*type == "llama3") {
    rope.scaling = RopeScaling::kLlama3;
    ASSIGN_OR_RETURN(rope.factor, required_positive("factor"));
    ASSIGN_OR_RETURN(rope.low_freq_factor, required_positive("low_freq_factor"));
    ASSIGN_OR_RETURN(rope.high_freq_factor, required_positive("high_freq_factor"));
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      return fields.Error("high_freq_factor", "must be greater than low_freq_factor");
    }
    ASSIGN_OR_RETURN(rope.original_max_position, fields.Int("original_max_position_embeddings"));
    if (rope.original_max_position <= 0) {
      return fields.Error("original_max_position_embeddings", "must be positive");
    }
    return rope;
  }
  return fields.Error(type_key, absl::StrCat("unsupported rope scaling '", *type,
                                             "' (supported: default, linear, llama3)"));
}

absl::StatusOr<ModelSpec> ParseObject(const nlohmann::json& config, const std::string& origin) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected a JSON object, got ", JsonTypeName(config)));
  }
  JsonObjectReader reader(config, origin);
  ModelSpec spec;

  ASSIGN_OR_RETURN(std::optional<std::string> model_type, reader.OptionalString("model_type"));
  if (!model_type.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": missing required key 'model_type'"));
  }
  const Family* family = FindFamilyByType(*model_type);
  if (family == nullptr) {
    return reader.Error("model_type", absl::StrCat("unsupported model type '", *model_type,
                                                   "' (supported: llama, mistral, qwen2)"));
  }
  spec.model_type = *model_type;
  spec.architecture = std::string(family->architecture);
  if (const nlohmann::json* architectures = reader.Find("architectures")) {
    if (!architectures->is_array() || architectures->empty() || !(*architectures)[0].is_string()) {
      return reader.Error("architectures", "expected a non-empty list of strings");
    }
    spec.architecture = (*architectures)[0].get<std::string>();
    if (!IsKnownArchitecture(spec.architecture)) {
      return reader.Error("architectures",
                          absl::StrCat("unsupported architecture '", spec.architecture,
                                       "' (supported: LlamaForCausalLM, MistralForCausalLM, "
                                       "Qwen2ForCausalLM)"));
    }
  }

  auto positive = [&](std::string_view key, int64_t value) -> absl::Status {
    if (value <= 0) return reader.Error(key, absl::StrCat("must be positive, got ", value));
    if (value > kMaxDimension) {
      return reader.Error(key, absl::StrCat("too large: ", value, " > ", kMaxDimension));
    }
    return absl::OkStatus();
  };
  auto required_size = [&](std::string_view key, int64_t* field) -> absl::Status {
    ASSIGN_OR_RETURN(*field, reader.Int(key));
    return positive(key, *field);
  };
  RETURN_IF_ERROR(required_size("vocab_size", &spec.vocab_size));
  RETURN_IF_ERROR(required_size("hidden_size", &spec.hidden_size));
  RETURN_IF_ERROR(required_size("intermediate_size", &spec.intermediate_size));
  RETURN_IF_ERROR(required_size("num_hidden_layers", &spec.num_layers));
  RETURN_IF_ERROR(required_size("num_attention_heads", &spec.num_heads));

  ASSIGN_OR_RETURN(std::optional<int64_t> kv_heads, reader.OptionalInt("num_key_value_heads"));
  spec.num_kv_heads = kv_heads.value_or(spec.num_heads);
  RETURN_IF_ERROR(positive("num_key_value_heads", spec.num_kv_heads));
  if (spec.num_heads % spec.num_kv_heads != 0) {
    return reader.Error(
        "num_key_value_heads",
        absl::StrCat(spec.num_kv_heads, " does not divide num_attention_heads ", spec.num_heads));
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> head_dim, reader.OptionalInt("head_dim"));
  if (head_dim.has_value()) {
    spec.head_dim = *head_dim;
    RETURN_IF_ERROR(positive("head_dim", spec.head_dim));
  } else {
    if (spec.hidden_size % spec.num_heads != 0) {
      return reader.Error("num_attention_heads",
                          absl::StrCat(spec.num_heads, " does not divide hidden_size ",
                                       spec.hidden_size, " and head_dim is not given"));
    }
    spec.head_dim = spec.hidden_size / spec.num_heads;
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> max_position,
                   reader.OptionalInt("max_position_embeddings"));
  spec.max_position_embeddings = max_position.value_or(family->default_max_position);
  RETURN_IF_ERROR(positive("max_position_embeddings", spec.max_position_embeddings));

  ASSIGN_OR_RETURN(std::optional<int64_t> sliding_window, reader.OptionalInt("sliding_window"));
  ASSIGN_OR_RETURN(std::optional<bool> use_sliding_window,
                   reader.OptionalBool("use_sliding_window"));
  // Qwen2 configs carry a sliding_window that only applies when use_sliding_window is true.
  if (sliding_window.has_value() && use_sliding_window.value_or(spec.model_type != "qwen2")) {
    if (*sliding_window < 0) return reader.Error("sliding_window", "must not be negative");
    spec.sliding_window = *sliding_window;
  }

  ASSIGN_OR_RETURN(std::optional<double> eps, reader.OptionalDouble("rms_norm_eps"));
  if (eps.has_value()) spec.rms_norm_eps = *eps;
  if (!(spec.rms_norm_eps > 0)) return reader.Error("rms_norm_eps", "must be positive");
  ASSIGN_OR_RETURN(spec.rope, ReadRope(reader));

  ASSIGN_OR_RETURN(std::optional<bool> tie, reader.OptionalBool("tie_word_embeddings"));
  spec.tie_word_embeddings = tie.value_or(false);
  ASSIGN_OR_RETURN(std::optional<bool> attention_bias, reader.OptionalBool("attention_bias"));
  spec.qkv_bias = spec.model_type == "qwen2" || attention_bias.value_or(false);

  // Newer transformers write "dtype"; older ones "torch_dtype". HF loads float32 when absent.
  std::string dtype_key = reader.Has("torch_dtype") ? "torch_dtype" : "dtype";
  ASSIGN_OR_RETURN(std::optional<std::string> dtype, reader.OptionalString(dtype_key));
  spec.dtype = DType::kFloat32;
  if (dtype.has_value()) {
    absl::StatusOr<DType> parsed = ParseDType(*dtype);
    if (!parsed.ok()) return reader.Error(dtype_key, std::string(parsed.status().message()));
    spec.dtype = *parsed;
  }

  ASSIGN_OR_RETURN(spec.bos_token_ids, ReadTokenIds(reader, "bos_token_id", spec.vocab_size));
  ASSIGN_OR_RETURN(spec.eos_token_ids, ReadTokenIds(reader, "eos_token_id", spec.vocab_size));
  return spec;
}

nlohmann::ordered_json TokenIdsToJson(const std::vector<int32_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  return ids;
}

}  // namespace

int64_t ModelSpec::NumParameters() const {
  const int64_t attention = hidden_size * q_size() + 2 * hidden_size * kv_size() +
                            q_size() * hidden_size + (qkv_bias ? q_size() + 2 * kv_size() : 0);
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t norms = 2 * hidden_size;
  const int64_t embeddings = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2);
  return embeddings + num_layers * (attention + mlp + norms) + hidden_size;
}

int64_t ModelSpec::WeightBytes(DType weight_dtype) const {
  return NumParameters() * static_cast<int64_t>(DTypeSize(weight_dtype));
}

DType ModelSpec::GpuDType(std::optional<DType> configured) const {
  if (configured.has_value()) return *configured;
  return dtype == DType::kFloat32 ? DType::kBFloat16 : dtype;
}

int64_t ModelSpec::KvBytesPerToken(DType kv_dtype) const {
  return 2 * num_layers * kv_size() * static_cast<int64_t>(DTypeSize(kv_dtype));
}

// FLOPs of one token's forward pass, 2 per multiply-add:
//   matmuls:   2 * (per layer: q, k, v, o projections + gate, up, down; then lm_head)
//            = 2 * (L * (H*q + 2*H*kv + q*H + 3*H*I) + V*H)
//   attention: QK^T and PV over `context_len` keys for every query head
//            = 2 * 2 * L * context_len * q_size
// Norms, RoPE, softmax, biases and the embedding lookup are O(H) per token and left out.
double ModelSpec::FlopsPerToken(int64_t context_len) const {
  const double h = static_cast<double>(hidden_size);
  const double q = static_cast<double>(q_size());
  const double kv = static_cast<double>(kv_size());
  const double layers = static_cast<double>(num_layers);
  const double per_layer =
      h * q + 2 * h * kv + q * h + 3 * h * static_cast<double>(intermediate_size);
  const double matmuls = 2 * (layers * per_layer + static_cast<double>(vocab_size) * h);
  const double attention = 4 * layers * static_cast<double>(context_len) * q;
  return matmuls + attention;
}

absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& json_text, const std::string& origin) {
  ASSIGN_OR_RETURN(nlohmann::json config, ParseJson(json_text, origin));
  return ParseObject(config, origin);
}

absl::StatusOr<ModelSpec> LoadModelSpec(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "config.json";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelSpec(text, path.string());
}

std::string ModelSpecToJson(const ModelSpec& spec) {
  const Family* family = FindFamilyByType(spec.model_type);
  std::string architecture = spec.architecture;
  if (architecture.empty() && family != nullptr) architecture = family->architecture;

  nlohmann::ordered_json config;
  config["architectures"] = nlohmann::ordered_json::array({architecture});
  config["model_type"] = spec.model_type;
  config["vocab_size"] = spec.vocab_size;
  config["hidden_size"] = spec.hidden_size;
  config["intermediate_size"] = spec.intermediate_size;
  config["num_hidden_layers"] = spec.num_layers;
  config["num_attention_heads"] = spec.num_heads;
  config["num_key_value_heads"] = spec.num_kv_heads;
  config["head_dim"] = spec.head_dim;
  config["hidden_act"] = "silu";
  config["max_position_embeddings"] = spec.max_position_embeddings;
  if (spec.sliding_window > 0) {
    config["sliding_window"] = spec.sliding_window;
    if (spec.model_type == "qwen2") config["use_sliding_window"] = true;
  } else {
    config["sliding_window"] = nullptr;
    if (spec.model_type == "qwen2") config["use_sliding_window"] = false;
  }
  config["rms_norm_eps"] = spec.rms_norm_eps;
  config["rope_theta"] = spec.rope.theta;
  switch (spec.rope.scaling) {
    case RopeScaling::kNone:
      config["rope_scaling"] = nullptr;
      break;
    case RopeScaling::kLinear:
      config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", spec.rope.factor}};
      break;
    case RopeScaling::kLlama3:
      config["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", spec.rope.factor},
          {"low_freq_factor", spec.rope.low_freq_factor},
          {"high_freq_factor", spec.rope.high_freq_factor},
          {"original_max_position_embeddings", spec.rope.original_max_position}};
      break;
  }
  config["attention_bias"] = spec.qkv_bias || spec.model_type == "qwen2";
  config["tie_word_embeddings"] = spec.tie_word_embeddings;
  config["torch_dtype"] = std::string(DTypeName(spec.dtype));
  config["bos_token_id"] = TokenIdsToJson(spec.bos_token_ids);
  config["eos_token_id"] = TokenIdsToJson(spec.eos_token_ids);
  return config.dump(2) + "\n";
}

}  // namespace muxserve::model
