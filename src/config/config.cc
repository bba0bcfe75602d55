#include "muxserve/config/config.h"

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "muxserve/common/status.h"
#include "muxserve/model/synthetic.h"
#include "yaml-cpp/yaml.h"

namespace muxserve::config {
namespace {

namespace fs = std::filesystem;

using KeyList = std::span<const std::string_view>;

constexpr std::string_view kTopLevelKeys[] = {"server", "runtime", "kv_cache", "scheduler",
                                              "models"};
constexpr std::string_view kServerKeys[] = {"grpc_address", "metrics_address",
                                            "shutdown_grace_seconds", "max_queued_requests",
                                            "synthetic_dir"};
constexpr std::string_view kRuntimeKeys[] = {"backend", "cpu_threads"};
constexpr std::string_view kKvCacheKeys[] = {"memory", "block_bytes"};
constexpr std::string_view kSchedulerKeys[] = {"mode", "max_prefill_tokens", "max_batch_size"};
constexpr std::string_view kModelKeys[] = {"name", "path",        "synthetic",    "dtype",
                                           "rate", "max_context", "chat_template"};
constexpr std::string_view kSyntheticKeys[] = {
    "layers", "hidden",       "heads",      "kv_heads", "head_dim",       "intermediate",
    "vocab",  "max_position", "rope_theta", "qkv_bias", "tie_embeddings", "seed"};
constexpr std::string_view kChatTemplates[] = {"", "chatml", "llama3", "llama2", "mistral"};
constexpr std::string_view kBackends[] = {"auto", "cpu", "cuda"};
constexpr std::string_view kSchedulerModes[] = {"muxserve", "temporal", "spatial"};

// The synthetic tokenizer (model/synthetic.h) ends with <|endoftext|> (256), <|im_start|> (257)
// and <|im_end|> (258).
constexpr int32_t kSyntheticEndOfText = 256;
constexpr int32_t kSyntheticImEnd = 258;

// 1-based line of a node; 0 when yaml-cpp has no position for it.
int NodeLine(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string JoinPath(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return absl::StrCat(AsAbsl(prefix), ".", AsAbsl(key));
}

std::string Quoted(std::string_view text) { return absl::StrCat("'", AsAbsl(text), "'"); }

bool Contains(KeyList list, std::string_view value) {
  for (std::string_view item : list) {
    if (item == value) return true;
  }
  return false;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") return absl::StrCat("the quoted string \"", node.Scalar(), "\"");
      return Quoted(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// A quoted scalar ("5") is a string even when it reads like a number.
bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

// One YAML map after its keys were checked: finds fields by name and knows their paths.
class MapView {
 public:
  struct Field {
    YAML::Node key;
    YAML::Node value;
  };

  MapView(YAML::Node node, std::string path) : node_(std::move(node)), path_(std::move(path)) {}

  const Field* Find(std::string_view key) const {
    auto it = fields_.find(AsAbsl(key));
    return it == fields_.end() ? nullptr : &it->second;
  }
  std::string Path(std::string_view key) const { return JoinPath(path_, key); }
  const std::string& path() const { return path_; }
  // Line of the field's value, or of the map itself when the field is absent.
  int LineOf(std::string_view key) const {
    const Field* field = Find(key);
    if (field == nullptr) return line();
    // An empty value (`key:`) has the position of whatever follows it: use the key's line.
    int value_line = field->value.IsNull() ? 0 : NodeLine(field->value);
    if (value_line == 0) value_line = NodeLine(field->key);
    return value_line == 0 ? line() : value_line;
  }
  // Line where the map starts.
  int line() const {
    const int map_line = NodeLine(node_);
    return map_line == 0 ? 1 : map_line;
  }

 private:
  friend class Parser;
  YAML::Node node_;
  std::string path_;
  absl::flat_hash_map<std::string, Field> fields_;
};

class Parser {
 public:
  Parser(std::string file, fs::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  absl::StatusOr<Config> Parse(const YAML::Node& root) {
    Config config;
    YAML::Node top = root;
    if (!top.IsDefined() || top.IsNull()) top = YAML::Node(YAML::NodeType::Map);
    ASSIGN_OR_RETURN(MapView map, ReadMap(top, "", kTopLevelKeys));

    ASSIGN_OR_RETURN(std::optional<MapView> server, ReadSection(map, "server", kServerKeys));
    config.server.synthetic_dir = base_dir_ / ".cache" / "synthetic";
    if (server) RETURN_IF_ERROR(ParseServer(*server, &config.server));

    ASSIGN_OR_RETURN(std::optional<MapView> runtime, ReadSection(map, "runtime", kRuntimeKeys));
    if (runtime) RETURN_IF_ERROR(ParseRuntime(*runtime, &config.runtime));

    ASSIGN_OR_RETURN(std::optional<MapView> kv_cache, ReadSection(map, "kv_cache", kKvCacheKeys));
    if (kv_cache) RETURN_IF_ERROR(ParseKvCache(*kv_cache, &config.kv_cache));

    ASSIGN_OR_RETURN(std::optional<MapView> scheduler,
                     ReadSection(map, "scheduler", kSchedulerKeys));
    if (scheduler) RETURN_IF_ERROR(ParseScheduler(*scheduler, &config.scheduler));

    RETURN_IF_ERROR(ParseModels(map, &config.models));
    return config;
  }

 private:
  absl::Status Error(int line, std::string_view key, std::string_view reason) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", line == 0 ? 1 : line, ": key '",
                                                   AsAbsl(key), "': ", AsAbsl(reason)));
  }
  absl::Status FieldError(const MapView& map, std::string_view key, std::string_view reason) const {
    return Error(map.LineOf(key), map.Path(key), reason);
  }

  // Checks that `node` is a map whose keys are all in `allowed`, each at most once.
  absl::StatusOr<MapView> ReadMap(const YAML::Node& node, std::string path, KeyList allowed) const {
    const std::string allowed_text = absl::StrJoin(
        allowed, ", ", [](std::string* out, auto key) { absl::StrAppend(out, AsAbsl(key)); });
    if (!node.IsMap()) {
      return Error(
          NodeLine(node), path.empty() ? "(top level)" : path,
          absl::StrCat("expected a map with keys ", allowed_text, ", got ", Describe(node)));
    }
    MapView view(node, std::move(path));
    for (const auto& entry : node) {
      // Copies: yaml-cpp's iterator hands out a temporary pair of node handles.
      const YAML::Node key = entry.first;
      if (!key.IsScalar()) {
        return Error(NodeLine(key), view.path().empty() ? "(top level)" : view.path(),
                     absl::StrCat("map keys must be names, got ", Describe(key)));
      }
      const std::string& name = key.Scalar();
      if (!Contains(allowed, name)) {
        return Error(NodeLine(key), view.Path(name),
                     absl::StrCat("unknown key (allowed: ", allowed_text, ")"));
      }
      auto [existing, inserted] = view.fields_.try_emplace(name, MapView::Field{key, entry.second});
      if (!inserted) {
        return Error(
            NodeLine(key), view.Path(name),
            absl::StrCat("duplicate key (first at line ", NodeLine(existing->second.key), ")"));
      }
    }
    return view;
  }

  // An optional sub-map of `parent`; absent or empty (`server:`) gives nullopt.
  absl::StatusOr<std::optional<MapView>> ReadSection(const MapView& parent, std::string_view key,
                                                     KeyList allowed) const {
    const MapView::Field* field = parent.Find(key);
    if (field == nullptr || field->value.IsNull()) return std::nullopt;
    ASSIGN_OR_RETURN(MapView view, ReadMap(field->value, parent.Path(key), allowed));
    return std::optional<MapView>(std::move(view));
  }

  // Typed readers: leave `out` unchanged when the key is absent.
  absl::Status GetInt(const MapView& map, std::string_view key, int64_t* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    int64_t value = 0;
    if (!IsPlainScalar(field->value) || !absl::SimpleAtoi(field->value.Scalar(), &value)) {
      return FieldError(map, key,
                        absl::StrCat("expected an integer, got ", Describe(field->value)));
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status GetUint(const MapView& map, std::string_view key, uint64_t* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    uint64_t value = 0;
    if (!IsPlainScalar(field->value) || !absl::SimpleAtoi(field->value.Scalar(), &value)) {
      return FieldError(
          map, key, absl::StrCat("expected a non-negative integer, got ", Describe(field->value)));
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status GetDouble(const MapView& map, std::string_view key, double* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    double value = 0;
    if (!IsPlainScalar(field->value) || !absl::SimpleAtod(field->value.Scalar(), &value) ||
        !std::isfinite(value)) {
      return FieldError(map, key, absl::StrCat("expected a number, got ", Describe(field->value)));
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status GetBool(const MapView& map, std::string_view key, bool* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    bool value = false;
    if (!IsPlainScalar(field->value) || !YAML::convert<bool>::decode(field->value, value)) {
      return FieldError(map, key,
                        absl::StrCat("expected true or false, got ", Describe(field->value)));
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status GetString(const MapView& map, std::string_view key, std::string* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    if (!field->value.IsScalar()) {
      return FieldError(map, key, absl::StrCat("expected a string, got ", Describe(field->value)));
    }
    *out = field->value.Scalar();
    return absl::OkStatus();
  }

  absl::Status GetSize(const MapView& map, std::string_view key, int64_t* out) const {
    const MapView::Field* field = map.Find(key);
    if (field == nullptr) return absl::OkStatus();
    if (!field->value.IsScalar()) {
      return FieldError(map, key, absl::StrCat("expected a size, got ", Describe(field->value)));
    }
    absl::StatusOr<int64_t> size = ParseByteSize(field->value.Scalar());
    if (!size.ok()) return FieldError(map, key, std::string(size.status().message()));
    *out = *size;
    return absl::OkStatus();
  }

  // One of `choices`, spelled exactly.
  absl::Status GetChoice(const MapView& map, std::string_view key, KeyList choices,
                         std::string* out) const {
    std::string value = *out;
    RETURN_IF_ERROR(GetString(map, key, &value));
    if (!Contains(choices, value)) {
      std::vector<std::string> named;
      for (std::string_view choice : choices) named.push_back(Quoted(choice));
      return FieldError(map, key,
                        absl::StrCat("unknown value ", Quoted(value), " (one of ",
                                     absl::StrJoin(named, ", "), ")"));
    }
    *out = std::move(value);
    return absl::OkStatus();
  }

  absl::Status Require(bool ok, const MapView& map, std::string_view key,
                       std::string_view reason) const {
    return ok ? absl::OkStatus() : FieldError(map, key, reason);
  }

  fs::path Resolve(const std::string& path) const {
    return (base_dir_ / fs::path(path)).lexically_normal();
  }

  absl::Status CheckAddress(const MapView& map, std::string_view key,
                            const std::string& address) const {
    const size_t colon = address.rfind(':');
    if (address.empty() || colon == std::string::npos) {
      return FieldError(
          map, key,
          absl::StrCat("expected host:port (e.g. 127.0.0.1:50051), got ", Quoted(address)));
    }
    const std::string host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (host.empty() || (!bracketed && host.find_first_of("[]:") != std::string::npos)) {
      return FieldError(
          map, key,
          absl::StrCat("bad host in ", Quoted(address),
                       " (expected host:port; IPv6 hosts go in brackets, [::1]:50051)"));
    }
    int64_t port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
      return FieldError(map, key,
                        absl::StrCat("bad port in ", Quoted(address),
                                     " (expected 0 to 65535; 0 picks a free port)"));
    }
    return absl::OkStatus();
  }

  absl::Status ParseServer(const MapView& map, ServerConfig* server) const {
    RETURN_IF_ERROR(GetString(map, "grpc_address", &server->grpc_address));
    RETURN_IF_ERROR(CheckAddress(map, "grpc_address", server->grpc_address));
    RETURN_IF_ERROR(GetString(map, "metrics_address", &server->metrics_address));
    if (!server->metrics_address.empty()) {
      RETURN_IF_ERROR(CheckAddress(map, "metrics_address", server->metrics_address));
      // Port 0 asks for any free port, so two such addresses never clash.
      const bool any_port = absl::EndsWith(server->grpc_address, ":0");
      RETURN_IF_ERROR(Require(any_port || server->metrics_address != server->grpc_address, map,
                              "metrics_address", "must differ from grpc_address"));
    }
    RETURN_IF_ERROR(GetDouble(map, "shutdown_grace_seconds", &server->shutdown_grace_seconds));
    RETURN_IF_ERROR(Require(server->shutdown_grace_seconds >= 0, map, "shutdown_grace_seconds",
                            "must be >= 0"));
    RETURN_IF_ERROR(GetInt(map, "max_queued_requests", &server->max_queued_requests));
    RETURN_IF_ERROR(
        Require(server->max_queued_requests >= 1, map, "max_queued_requests", "must be >= 1"));
    if (map.Find("synthetic_dir") != nullptr) {
      std::string dir;
      RETURN_IF_ERROR(GetString(map, "synthetic_dir", &dir));
      RETURN_IF_ERROR(Require(!dir.empty(), map, "synthetic_dir", "must not be empty"));
      server->synthetic_dir = Resolve(dir);
    }
    return absl::OkStatus();
  }

  absl::Status ParseRuntime(const MapView& map, RuntimeConfig* runtime) const {
    std::string backend(BackendName(runtime->backend));
    RETURN_IF_ERROR(GetChoice(map, "backend", kBackends, &backend));
    runtime->backend = backend == "cpu"    ? Backend::kCpu
                       : backend == "cuda" ? Backend::kCuda
                                           : Backend::kAuto;
    RETURN_IF_ERROR(GetInt(map, "cpu_threads", &runtime->cpu_threads));
    return Require(runtime->cpu_threads >= 0, map, "cpu_threads", "must be >= 0 (0: all cores)");
  }

  absl::Status ParseKvCache(const MapView& map, KvCacheConfig* kv_cache) const {
    RETURN_IF_ERROR(GetSize(map, "memory", &kv_cache->memory_bytes));
    RETURN_IF_ERROR(Require(kv_cache->memory_bytes > 0, map, "memory", "must be > 0"));
    RETURN_IF_ERROR(GetSize(map, "block_bytes", &kv_cache->block_bytes));
    const int64_t block = kv_cache->block_bytes;
    RETURN_IF_ERROR(Require(block >= 1024 && (block & (block - 1)) == 0, map, "block_bytes",
                            absl::StrCat("must be a power of two >= 1024, got ", block)));
    return Require(kv_cache->memory_bytes >= block, map, "memory",
                   absl::StrCat("must hold at least one block (", block, " bytes)"));
  }

  absl::Status ParseScheduler(const MapView& map, SchedulerConfig* scheduler) const {
    std::string mode(SchedulerModeName(scheduler->mode));
    RETURN_IF_ERROR(GetChoice(map, "mode", kSchedulerModes, &mode));
    scheduler->mode = mode == "temporal"  ? SchedulerMode::kTemporal
                      : mode == "spatial" ? SchedulerMode::kSpatial
                                          : SchedulerMode::kMuxserve;
    RETURN_IF_ERROR(GetInt(map, "max_prefill_tokens", &scheduler->max_prefill_tokens));
    RETURN_IF_ERROR(
        Require(scheduler->max_prefill_tokens >= 1, map, "max_prefill_tokens", "must be >= 1"));
    RETURN_IF_ERROR(GetInt(map, "max_batch_size", &scheduler->max_batch_size));
    return Require(scheduler->max_batch_size >= 1, map, "max_batch_size", "must be >= 1");
  }

  absl::Status ParseModels(const MapView& top, std::vector<ModelConfig>* models) const {
    const MapView::Field* field = top.Find("models");
    if (field == nullptr || field->value.IsNull()) {
      return Error(top.LineOf("models"), "models",
                   "required: the list of models to serve (each with a name and a path or "
                   "synthetic shape)");
    }
    const YAML::Node& list = field->value;
    if (!list.IsSequence()) {
      return Error(NodeLine(list), "models",
                   absl::StrCat("expected a list of models, got ", Describe(list)));
    }
    if (list.size() == 0) {
      return Error(NodeLine(list), "models", "the list is empty: at least one model is required");
    }
    absl::flat_hash_map<std::string, int> first_line_of_name;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string path = absl::StrCat("models[", i, "]");
      ASSIGN_OR_RETURN(MapView entry, ReadMap(list[i], path, kModelKeys));
      ASSIGN_OR_RETURN(ModelConfig model, ParseModel(entry, &first_line_of_name));
      models->push_back(std::move(model));
    }
    return absl::OkStatus();
  }

  // `first_line_of_name` holds the models before this one, to report duplicates.
  absl::StatusOr<ModelConfig> ParseModel(
      const MapView& map, absl::flat_hash_map<std::string, int>* first_line_of_name) const {
    ModelConfig model;
    model.line = map.line();
    if (map.Find("name") == nullptr) return FieldError(map, "name", "required");
    RETURN_IF_ERROR(GetString(map, "name", &model.name));
    const bool name_ok =
        !model.name.empty() && model.name.find_first_not_of(
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789._-") == std::string::npos;
    RETURN_IF_ERROR(Require(name_ok, map, "name",
                            absl::StrCat("bad model name ", Quoted(model.name),
                                         " (use letters, digits, '.', '_' and '-')")));
    auto [existing, inserted] = first_line_of_name->try_emplace(model.name, map.LineOf("name"));
    if (!inserted) {
      return FieldError(map, "name",
                        absl::StrCat("duplicate model name ", Quoted(model.name),
                                     " (first defined at line ", existing->second, ")"));
    }

    const bool has_path = map.Find("path") != nullptr;
    const bool has_synthetic = map.Find("synthetic") != nullptr;
    if (has_path == has_synthetic) {
      return Error(map.line(), map.path(),
                   has_path ? "set exactly one of 'path' and 'synthetic', not both"
                            : "one of 'path' (a Hugging Face model directory) or 'synthetic' "
                              "(the shape of a generated model) is required");
    }
    if (has_path) {
      std::string path;
      RETURN_IF_ERROR(GetString(map, "path", &path));
      RETURN_IF_ERROR(Require(!path.empty(), map, "path", "must not be empty"));
      model.path = Resolve(path);
      RETURN_IF_ERROR(CheckModelDirectory(map, model.path));
    } else {
      ASSIGN_OR_RETURN(std::optional<MapView> synthetic,
                       ReadSection(map, "synthetic", kSyntheticKeys));
      if (!synthetic) {
        return FieldError(map, "synthetic",
                          "expected a map with the model's shape (layers, hidden, heads, "
                          "intermediate, ...)");
      }
      ASSIGN_OR_RETURN(model.synthetic, ParseSynthetic(*synthetic));
    }

    if (map.Find("dtype") != nullptr) {
      std::string dtype_name;
      RETURN_IF_ERROR(GetString(map, "dtype", &dtype_name));
      absl::StatusOr<DType> dtype = ParseDType(dtype_name);
      if (!dtype.ok()) return FieldError(map, "dtype", std::string(dtype.status().message()));
      model.dtype = *dtype;
    }
    RETURN_IF_ERROR(GetDouble(map, "rate", &model.rate));
    RETURN_IF_ERROR(Require(model.rate > 0, map, "rate",
                            absl::StrCat("must be > 0 (requests per second), got ", model.rate)));
    RETURN_IF_ERROR(GetInt(map, "max_context", &model.max_context));
    RETURN_IF_ERROR(Require(model.max_context >= 0, map, "max_context",
                            "must be >= 0 (0: the model's max_position_embeddings)"));
    if (model.synthetic) {
      const int64_t max_position = model.synthetic->spec.max_position_embeddings;
      RETURN_IF_ERROR(
          Require(model.max_context <= max_position, map, "max_context",
                  absl::StrCat("exceeds the model's max_position (", max_position, ")")));
    }
    RETURN_IF_ERROR(GetChoice(map, "chat_template", kChatTemplates, &model.chat_template));
    return model;
  }

  absl::Status CheckModelDirectory(const MapView& map, const fs::path& dir) const {
    std::error_code error;
    if (!fs::is_directory(dir, error)) {
      return FieldError(
          map, "path",
          absl::StrCat("model directory ", Quoted(dir.string()),
                       fs::exists(dir, error) ? " is not a directory" : " does not exist"));
    }
    if (!fs::is_regular_file(dir / "config.json", error)) {
      return FieldError(map, "path",
                        absl::StrCat(Quoted(dir.string()),
                                     " has no config.json (expected a Hugging Face model "
                                     "directory)"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SyntheticSpec> ParseSynthetic(const MapView& map) const {
    for (std::string_view key : {"layers", "hidden", "heads", "intermediate"}) {
      if (map.Find(key) == nullptr) return FieldError(map, key, "required");
    }
    SyntheticSpec synthetic;
    model::ModelSpec& spec = synthetic.spec;
    spec.architecture = "LlamaForCausalLM";
    spec.model_type = "llama";
    spec.dtype = DType::kBFloat16;
    spec.rms_norm_eps = 1e-5;
    spec.eos_token_ids = {kSyntheticImEnd, kSyntheticEndOfText};
    spec.vocab_size = 320;
    spec.max_position_embeddings = 2048;

    struct PositiveField {
      std::string_view key;
      int64_t* value;
    };
    for (const PositiveField& field :
         {PositiveField{"layers", &spec.num_layers}, PositiveField{"hidden", &spec.hidden_size},
          PositiveField{"heads", &spec.num_heads},
          PositiveField{"intermediate", &spec.intermediate_size},
          PositiveField{"max_position", &spec.max_position_embeddings}}) {
      RETURN_IF_ERROR(GetInt(map, field.key, field.value));
      RETURN_IF_ERROR(Require(*field.value >= 1, map, field.key, "must be >= 1"));
    }

    spec.num_kv_heads = spec.num_heads;
    RETURN_IF_ERROR(GetInt(map, "kv_heads", &spec.num_kv_heads));
    RETURN_IF_ERROR(
        Require(spec.num_kv_heads >= 1 && spec.num_heads % spec.num_kv_heads == 0, map, "kv_heads",
                absl::StrCat("must divide heads (", spec.num_heads, "), got ", spec.num_kv_heads)));

    if (map.Find("head_dim") != nullptr) {
      RETURN_IF_ERROR(GetInt(map, "head_dim", &spec.head_dim));
    } else {
      RETURN_IF_ERROR(
          Require(spec.hidden_size % spec.num_heads == 0, map, "heads",
                  absl::StrCat("hidden (", spec.hidden_size, ") is not divisible by heads (",
                               spec.num_heads, "); set head_dim")));
      spec.head_dim = spec.hidden_size / spec.num_heads;
    }
    // RoPE rotates pairs of channels.
    RETURN_IF_ERROR(Require(spec.head_dim >= 2 && spec.head_dim % 2 == 0, map, "head_dim",
                            absl::StrCat("must be even and >= 2, got ", spec.head_dim)));

    RETURN_IF_ERROR(GetInt(map, "vocab", &spec.vocab_size));
    RETURN_IF_ERROR(
        Require(spec.vocab_size >= model::kSyntheticTokenizerSize, map, "vocab",
                absl::StrCat("must be >= ", model::kSyntheticTokenizerSize,
                             " (the synthetic tokenizer's size), got ", spec.vocab_size)));
    RETURN_IF_ERROR(GetDouble(map, "rope_theta", &spec.rope.theta));
    RETURN_IF_ERROR(Require(spec.rope.theta > 0, map, "rope_theta", "must be > 0"));
    RETURN_IF_ERROR(GetBool(map, "qkv_bias", &spec.qkv_bias));
    RETURN_IF_ERROR(GetBool(map, "tie_embeddings", &spec.tie_word_embeddings));
    RETURN_IF_ERROR(GetUint(map, "seed", &synthetic.seed));
    return synthetic;
  }

  std::string file_;
  fs::path base_dir_;
};

std::string FormatYamlError(const std::string& file, const YAML::Exception& error) {
  if (error.mark.is_null()) return absl::StrCat(file, ": invalid YAML: ", error.msg);
  return absl::StrCat(file, ":", error.mark.line + 1, ":", error.mark.column + 1,
                      ": invalid YAML: ", error.msg);
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const fs::path& origin) {
  const std::string file = origin.string();
  std::error_code error;
  fs::path absolute_origin = fs::absolute(origin, error);
  if (error) absolute_origin = origin;
  Parser parser(file, absolute_origin.parent_path());
  try {
    ASSIGN_OR_RETURN(Config config, parser.Parse(YAML::Load(yaml_text)));
    config.source = origin;
    return config;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(FormatYamlError(file, e));
  }
}

absl::StatusOr<Config> LoadConfig(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!fs::exists(path, error)) {
      return absl::NotFoundError(absl::StrCat("config file '", path.string(), "' does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read config file '", path.string(), "'"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kCpu:
      return "cpu";
    case Backend::kCuda:
      return "cuda";
  }
  return "unknown";
}

std::string_view SchedulerModeName(SchedulerMode mode) {
  switch (mode) {
    case SchedulerMode::kMuxserve:
      return "muxserve";
    case SchedulerMode::kTemporal:
      return "temporal";
    case SchedulerMode::kSpatial:
      return "spatial";
  }
  return "unknown";
}

}  // namespace muxserve::config
