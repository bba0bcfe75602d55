#include "muxserve/config/config.h"

#include <algorithm>
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
#include "absl/strings/ascii.h"
#include "muxserve/common/status.h"
#include "muxserve/model/synthetic.h"
#include "yaml-cpp/yaml.h"

namespace muxserve::config {
namespace {

namespace fs = std::filesystem;

using KeyList = std::span<const std::string_view>;

constexpr std::string_view kTopLevelKeys[] = {"server",  "auth",     "limits",
                                              "runtime", "kv_cache", "scheduler",
                                              "models",  "cluster",  "placement"};
constexpr std::string_view kServerKeys[] = {"grpc_address", "metrics_address",
                                            "shutdown_grace_seconds", "max_queued_requests",
                                            "synthetic_dir"};
constexpr std::string_view kAuthKeys[] = {"tokens", "tls"};
constexpr std::string_view kTokenKeys[] = {"name", "token", "token_file", "models"};
constexpr std::string_view kTlsKeys[] = {"cert", "key", "client_ca"};
constexpr std::string_view kLimitsKeys[] = {"max_message_bytes", "max_prompt_tokens",
                                            "max_stop_strings", "max_streams_per_client"};
constexpr std::string_view kClusterKeys[] = {"nodes", "gpus_per_node", "gpu"};
constexpr std::string_view kGpuKeys[] = {"name", "memory", "sm_count", "bandwidth", "flops"};
constexpr std::string_view kPlacementKeys[] = {"cost_table", "prompt_tokens", "output_tokens",
                                               "units"};
constexpr std::string_view kPinnedUnitKeys[] = {"gpus", "models"};
constexpr std::string_view kRuntimeKeys[] = {"backend", "cpu_threads", "partitions"};
constexpr std::string_view kKvCacheKeys[] = {"memory", "block_bytes"};
constexpr std::string_view kSchedulerKeys[] = {"mode",           "max_prefill_tokens",
                                               "max_batch_size", "decode_sm_share",
                                               "decode_priority", "spatial_split"};
constexpr std::string_view kModelKeys[] = {"name", "path",        "synthetic",    "dtype",
                                           "rate", "max_context", "chat_template", "sm_share"};
constexpr std::string_view kSyntheticKeys[] = {
    "layers",       "hidden",     "heads",    "kv_heads",       "head_dim", "intermediate", "vocab",
    "max_position", "rope_theta", "qkv_bias", "tie_embeddings", "seed",     "weights"};
constexpr std::string_view kSyntheticWeights[] = {"file", "device"};
constexpr std::string_view kChatTemplates[] = {"", "chatml", "llama3", "llama2", "mistral"};
constexpr std::string_view kBackends[] = {"auto", "cpu", "cuda"};
constexpr std::string_view kSchedulerModes[] = {"muxserve", "temporal", "spatial"};
constexpr std::string_view kSpatialSplits[] = {"memory", "compute"};
// false and true: the spellings from before by_rate (none and uniform), still in configs.
constexpr std::string_view kDecodePriorities[] = {"none", "uniform", "by_rate", "false", "true"};
constexpr std::string_view kPartitionBackends[] = {"auto", "none", "green", "mps"};

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

// The kind of a node without its text: for values that may be secrets.
std::string DescribeShape(const YAML::Node& node) {
  return node.IsScalar() ? "a scalar" : Describe(node);
}

// gRPC keeps message sizes in an int.
constexpr int64_t kMaxGrpcMessageBytes = 2147483647;

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

    // After the models: a token's model list must name configured models.
    ASSIGN_OR_RETURN(std::optional<MapView> auth, ReadSection(map, "auth", kAuthKeys));
    if (auth) RETURN_IF_ERROR(ParseAuth(*auth, config.models, &config.auth));

    ASSIGN_OR_RETURN(std::optional<MapView> limits, ReadSection(map, "limits", kLimitsKeys));
    if (limits) RETURN_IF_ERROR(ParseLimits(*limits, &config.limits));

    ASSIGN_OR_RETURN(std::optional<MapView> cluster, ReadSection(map, "cluster", kClusterKeys));
    if (cluster) RETURN_IF_ERROR(ParseCluster(*cluster, &config.cluster));
    ASSIGN_OR_RETURN(std::optional<MapView> placement,
                     ReadSection(map, "placement", kPlacementKeys));
    if (placement) {
      RETURN_IF_ERROR(ParsePlacement(*placement, config.models, config.cluster, &config.placement));
    }
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

  // Errors never quote a secret: they name the key and the token's position only.
  absl::Status ParseAuth(const MapView& map, const std::vector<ModelConfig>& models,
                         AuthConfig* auth) const {
    if (const MapView::Field* field = map.Find("tokens");
        field != nullptr && !field->value.IsNull()) {
      const YAML::Node& list = field->value;
      if (!list.IsSequence() || list.size() == 0) {
        return FieldError(
            map, "tokens",
            absl::StrCat("expected a non-empty list of tokens, got ", DescribeShape(list)));
      }
      for (size_t i = 0; i < list.size(); ++i) {
        ASSIGN_OR_RETURN(
            MapView entry,
            ReadMap(list[i], absl::StrCat(map.Path("tokens"), "[", i, "]"), kTokenKeys));
        ASSIGN_OR_RETURN(AuthToken token, ParseToken(entry, i, models));
        for (size_t j = 0; j < auth->tokens.size(); ++j) {
          if (auth->tokens[j].name == token.name) {
            return FieldError(entry, "name",
                              absl::StrCat("duplicate token name ", Quoted(token.name)));
          }
          if (auth->tokens[j].secret == token.secret) {
            return Error(entry.line(), entry.path(),
                         absl::StrCat("the same secret as token ", Quoted(auth->tokens[j].name),
                                      " (each client needs its own)"));
          }
        }
        auth->tokens.push_back(std::move(token));
      }
    }
    ASSIGN_OR_RETURN(std::optional<MapView> tls, ReadSection(map, "tls", kTlsKeys));
    if (tls) {
      TlsConfig config;
      RETURN_IF_ERROR(GetExistingFile(*tls, "cert", /*required=*/true, &config.cert));
      RETURN_IF_ERROR(GetExistingFile(*tls, "key", /*required=*/true, &config.key));
      RETURN_IF_ERROR(GetExistingFile(*tls, "client_ca", /*required=*/false, &config.client_ca));
      auth->tls = std::move(config);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<AuthToken> ParseToken(const MapView& map, size_t index,
                                       const std::vector<ModelConfig>& models) const {
    AuthToken token;
    token.name = absl::StrCat("tokens[", index, "]");
    RETURN_IF_ERROR(GetString(map, "name", &token.name));
    RETURN_IF_ERROR(Require(!token.name.empty(), map, "name", "must not be empty"));
    const bool has_token = map.Find("token") != nullptr;
    const bool has_file = map.Find("token_file") != nullptr;
    if (has_token == has_file) {
      return Error(map.line(), map.path(),
                   has_token ? "set exactly one of 'token' and 'token_file', not both"
                             : "one of 'token' (the secret) or 'token_file' (a file holding it) "
                               "is required");
    }
    std::string_view secret_key = has_token ? "token" : "token_file";
    if (has_token) {
      RETURN_IF_ERROR(GetString(map, "token", &token.secret));
    } else {
      fs::path file;
      RETURN_IF_ERROR(GetExistingFile(map, "token_file", /*required=*/true, &file));
      std::ifstream in(file, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      if (!in) {
        return FieldError(map, "token_file", absl::StrCat("cannot read ", Quoted(file.string())));
      }
      token.secret = std::string(absl::StripAsciiWhitespace(text.str()));
    }
    RETURN_IF_ERROR(Require(!token.secret.empty(), map, secret_key, "the token is empty"));
    // It travels in an HTTP/2 header value: visible ASCII only.
    const bool printable = std::all_of(token.secret.begin(), token.secret.end(),
                                       [](char c) { return c > ' ' && c < 0x7f; });
    RETURN_IF_ERROR(Require(printable, map, secret_key,
                            "the token may hold visible ASCII characters only (no spaces)"));

    if (const MapView::Field* field = map.Find("models"); field != nullptr) {
      if (!field->value.IsSequence()) {
        return FieldError(
            map, "models",
            absl::StrCat("expected a list of model names, got ", DescribeShape(field->value)));
      }
      for (const YAML::Node& item : field->value) {
        const bool known =
            item.IsScalar() && std::any_of(models.begin(), models.end(), [&](const auto& model) {
              return model.name == item.Scalar();
            });
        if (!known) {
          return Error(NodeLine(item) == 0 ? map.LineOf("models") : NodeLine(item),
                       map.Path("models"),
                       absl::StrCat(Describe(item), " is not a model in the 'models' list"));
        }
        token.models.push_back(item.Scalar());
      }
    }
    return token;
  }

  // A path resolved against the config's folder that must name a readable regular file.
  absl::Status GetExistingFile(const MapView& map, std::string_view key, bool required,
                               fs::path* out) const {
    if (map.Find(key) == nullptr) return Require(!required, map, key, "required");
    std::string text;
    RETURN_IF_ERROR(GetString(map, key, &text));
    RETURN_IF_ERROR(Require(!text.empty(), map, key, "must not be empty"));
    const fs::path path = Resolve(text);
    std::error_code error;
    if (!fs::is_regular_file(path, error)) {
      return FieldError(
          map, key,
          absl::StrCat("file ", Quoted(path.string()),
                       fs::exists(path, error) ? " is not a regular file" : " does not exist"));
    }
    *out = path;
    return absl::OkStatus();
  }

  absl::Status ParseLimits(const MapView& map, LimitsConfig* limits) const {
    RETURN_IF_ERROR(GetSize(map, "max_message_bytes", &limits->max_message_bytes));
    RETURN_IF_ERROR(Require(
        limits->max_message_bytes >= 1024 && limits->max_message_bytes <= kMaxGrpcMessageBytes, map,
        "max_message_bytes",
        absl::StrCat("must be between 1KiB and 2GiB - 1, got ", limits->max_message_bytes)));
    for (auto [key, value] :
         {std::pair<std::string_view, int64_t*>{"max_prompt_tokens", &limits->max_prompt_tokens},
          {"max_stop_strings", &limits->max_stop_strings},
          {"max_streams_per_client", &limits->max_streams_per_client}}) {
      RETURN_IF_ERROR(GetInt(map, key, value));
      RETURN_IF_ERROR(Require(*value >= 0, map, key, "must be >= 0 (0: no limit)"));
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
    RETURN_IF_ERROR(
        Require(runtime->cpu_threads >= 0, map, "cpu_threads", "must be >= 0 (0: all cores)"));
    std::string partitions(PartitionBackendName(runtime->partitions));
    RETURN_IF_ERROR(GetChoice(map, "partitions", kPartitionBackends, &partitions));
    runtime->partitions = partitions == "none"    ? PartitionBackend::kNone
                          : partitions == "green" ? PartitionBackend::kGreen
                          : partitions == "mps"   ? PartitionBackend::kMps
                                                  : PartitionBackend::kAuto;
    return absl::OkStatus();
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
    RETURN_IF_ERROR(
        Require(scheduler->max_batch_size >= 1, map, "max_batch_size", "must be >= 1"));
    RETURN_IF_ERROR(ParseDecodePriority(map, &scheduler->decode_priority));
    std::string split(SpatialSplitName(scheduler->spatial_split));
    RETURN_IF_ERROR(GetChoice(map, "spatial_split", kSpatialSplits, &split));
    scheduler->spatial_split =
        split == "compute" ? SpatialSplit::kCompute : SpatialSplit::kMemory;
    RETURN_IF_ERROR(GetDouble(map, "decode_sm_share", &scheduler->decode_sm_share));
    scheduler->decode_sm_share_set = map.Find("decode_sm_share") != nullptr;
    return Require(scheduler->decode_sm_share > 0 && scheduler->decode_sm_share < 1, map,
                   "decode_sm_share",
                   absl::StrCat("must be between 0 and 1 (exclusive), got ",
                                scheduler->decode_sm_share));
  }

  absl::Status ParseDecodePriority(const MapView& map, DecodePriority* priority) const {
    std::string name(DecodePriorityName(*priority));
    RETURN_IF_ERROR(GetChoice(map, "decode_priority", kDecodePriorities, &name));
    *priority = name == "by_rate"                      ? DecodePriority::kByRate
                : name == "uniform" || name == "true" ? DecodePriority::kUniform
                                                       : DecodePriority::kNone;
    return absl::OkStatus();
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
    RETURN_IF_ERROR(GetDouble(map, "sm_share", &model.sm_share));
    RETURN_IF_ERROR(Require(model.sm_share >= 0 && model.sm_share <= 1, map, "sm_share",
                            absl::StrCat("must be between 0 and 1 (0: by rate), got ",
                                         model.sm_share)));
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
    std::string weights = "file";
    RETURN_IF_ERROR(GetChoice(map, "weights", kSyntheticWeights, &weights));
    synthetic.device_weights = weights == "device";
    return synthetic;
  }

  absl::Status ParseCluster(const MapView& map, ClusterConfig* cluster) const {
    RETURN_IF_ERROR(GetInt(map, "nodes", &cluster->nodes));
    RETURN_IF_ERROR(Require(cluster->nodes >= 1, map, "nodes", "must be >= 1"));
    RETURN_IF_ERROR(GetInt(map, "gpus_per_node", &cluster->gpus_per_node));
    const int64_t per_node = cluster->gpus_per_node;
    RETURN_IF_ERROR(Require(per_node >= 1 && per_node <= 8 && (per_node & (per_node - 1)) == 0, map,
                            "gpus_per_node", absl::StrCat("must be 1, 2, 4 or 8, got ", per_node)));
    ASSIGN_OR_RETURN(std::optional<MapView> gpu, ReadSection(map, "gpu", kGpuKeys));
    if (!gpu) return absl::OkStatus();
    GpuConfig& out = cluster->gpu;
    RETURN_IF_ERROR(GetString(*gpu, "name", &out.name));
    RETURN_IF_ERROR(Require(!out.name.empty(), *gpu, "name", "must not be empty"));
    RETURN_IF_ERROR(GetSize(*gpu, "memory", &out.memory_bytes));
    RETURN_IF_ERROR(Require(out.memory_bytes > 0, *gpu, "memory", "must be > 0"));
    RETURN_IF_ERROR(GetInt(*gpu, "sm_count", &out.sm_count));
    RETURN_IF_ERROR(Require(out.sm_count >= 1, *gpu, "sm_count", "must be >= 1"));
    RETURN_IF_ERROR(GetDouble(*gpu, "bandwidth", &out.bandwidth));
    RETURN_IF_ERROR(Require(out.bandwidth > 0, *gpu, "bandwidth", "must be > 0 (bytes/s)"));
    RETURN_IF_ERROR(GetDouble(*gpu, "flops", &out.flops));
    return Require(out.flops > 0, *gpu, "flops", "must be > 0 (FLOP/s)");
  }

  // After the models and the cluster: pinned units name models and GPUs of both.
  absl::Status ParsePlacement(const MapView& map, const std::vector<ModelConfig>& models,
                              const ClusterConfig& cluster, PlacementConfig* placement) const {
    if (map.Find("cost_table") != nullptr) {
      std::string table;
      RETURN_IF_ERROR(GetString(map, "cost_table", &table));
      RETURN_IF_ERROR(Require(!table.empty(), map, "cost_table", "must not be empty"));
      placement->cost_table = Resolve(table);
    }
    RETURN_IF_ERROR(GetInt(map, "prompt_tokens", &placement->prompt_tokens));
    RETURN_IF_ERROR(Require(placement->prompt_tokens >= 1, map, "prompt_tokens", "must be >= 1"));
    RETURN_IF_ERROR(GetInt(map, "output_tokens", &placement->output_tokens));
    RETURN_IF_ERROR(Require(placement->output_tokens >= 1, map, "output_tokens", "must be >= 1"));
    const MapView::Field* field = map.Find("units");
    if (field == nullptr || field->value.IsNull()) return absl::OkStatus();
    if (!field->value.IsSequence() || field->value.size() == 0) {
      return FieldError(map, "units",
                        "expected a non-empty list of units ({gpus: [0, 1], models: [a, b]})");
    }
    const int64_t total_gpus = cluster.nodes * cluster.gpus_per_node;
    absl::flat_hash_map<int64_t, int> line_of_gpu;
    absl::flat_hash_map<std::string, int> line_of_model;
    for (size_t i = 0; i < field->value.size(); ++i) {
      ASSIGN_OR_RETURN(
          MapView unit_map,
          ReadMap(field->value[i], absl::StrCat(map.Path("units"), "[", i, "]"), kPinnedUnitKeys));
      PinnedUnit unit;
      unit.line = unit_map.line();
      for (std::string_view key : {"gpus", "models"}) {
        const MapView::Field* list = unit_map.Find(key);
        if (list == nullptr || !list->value.IsSequence() || list->value.size() == 0) {
          return FieldError(unit_map, key, "required: a non-empty list");
        }
      }
      for (const YAML::Node& item : unit_map.Find("gpus")->value) {
        int64_t gpu = 0;
        if (!IsPlainScalar(item) || !absl::SimpleAtoi(item.Scalar(), &gpu) || gpu < 0 ||
            gpu >= total_gpus) {
          return Error(NodeLine(item), unit_map.Path("gpus"),
                       absl::StrCat("expected a GPU id in [0, ", total_gpus, ") (the cluster has ",
                                    cluster.nodes, " x ", cluster.gpus_per_node, " GPUs), got ",
                                    Describe(item)));
        }
        auto [existing, inserted] = line_of_gpu.try_emplace(gpu, NodeLine(item));
        if (!inserted) {
          return Error(
              NodeLine(item), unit_map.Path("gpus"),
              absl::StrCat("GPU ", gpu, " is already in the unit at line ", existing->second));
        }
        unit.gpus.push_back(gpu);
      }
      const int64_t count = static_cast<int64_t>(unit.gpus.size());
      const int64_t node = unit.gpus.front() / cluster.gpus_per_node;
      bool one_node = true;
      for (int64_t gpu : unit.gpus) one_node = one_node && gpu / cluster.gpus_per_node == node;
      RETURN_IF_ERROR(Require((count & (count - 1)) == 0 && one_node, unit_map, "gpus",
                              "a unit is 1, 2, 4 or 8 GPUs of one node"));
      for (const YAML::Node& item : unit_map.Find("models")->value) {
        const std::string name = item.IsScalar() ? item.Scalar() : "";
        bool known = false;
        for (const ModelConfig& model : models) known = known || model.name == name;
        if (!known) {
          return Error(NodeLine(item), unit_map.Path("models"),
                       absl::StrCat("unknown model ", Describe(item), " (not in the models list)"));
        }
        auto [existing, inserted] = line_of_model.try_emplace(name, NodeLine(item));
        if (!inserted) {
          return Error(NodeLine(item), unit_map.Path("models"),
                       absl::StrCat("model ", Quoted(name), " is already placed at line ",
                                    existing->second));
        }
        unit.models.push_back(name);
      }
      placement->units.push_back(std::move(unit));
    }
    for (const ModelConfig& model : models) {
      if (!line_of_model.contains(model.name)) {
        return FieldError(map, "units",
                          absl::StrCat("model ", Quoted(model.name),
                                       " is in no unit (a pinned placement places every model)"));
      }
    }
    return absl::OkStatus();
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

std::string_view PartitionBackendName(PartitionBackend backend) {
  switch (backend) {
    case PartitionBackend::kAuto:
      return "auto";
    case PartitionBackend::kNone:
      return "none";
    case PartitionBackend::kGreen:
      return "green";
    case PartitionBackend::kMps:
      return "mps";
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

std::string_view SpatialSplitName(SpatialSplit split) {
  switch (split) {
    case SpatialSplit::kMemory:
      return "memory";
    case SpatialSplit::kCompute:
      return "compute";
  }
  return "unknown";
}

std::string_view DecodePriorityName(DecodePriority priority) {
  switch (priority) {
    case DecodePriority::kNone:
      return "none";
    case DecodePriority::kUniform:
      return "uniform";
    case DecodePriority::kByRate:
      return "by_rate";
  }
  return "unknown";
}

}  // namespace muxserve::config
