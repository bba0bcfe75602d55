#include "muxserve/config/config.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "muxserve/common/status.h"
#include "gtest/gtest.h"

namespace muxserve::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// YAML text from lines, so a test can name line numbers by counting (line N is element N-1).
std::string Lines(std::initializer_list<std::string_view> lines) {
  return absl::StrJoin(lines, "\n",
                       [](std::string* out, std::string_view line) {
                         absl::StrAppend(out, absl::string_view(line.data(), line.size()));
                       }) +
         "\n";
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("config_test_", ::getpid(), "_", counter.fetch_add(1));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Write(const fs::path& relative, const std::string& text) {
    const fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path;
  }
  // A directory that passes for a Hugging Face model directory.
  fs::path MakeModelDir(const fs::path& relative) {
    Write(relative / "config.json", "{}");
    return dir_ / relative;
  }

  fs::path dir_;
};

TEST_F(ConfigTest, FullFile) {
  MakeModelDir("models/llama");
  const fs::path path = Write("muxserve.yaml", Lines({
                                                   "server:",
                                                   "  grpc_address: 0.0.0.0:6000",
                                                   "  metrics_address: \"\"",
                                                   "  shutdown_grace_seconds: 2.5",
                                                   "  max_queued_requests: 64",
                                                   "  synthetic_dir: cache/synth",
                                                   "runtime:",
                                                   "  backend: cpu",
                                                   "  cpu_threads: 2",
                                                   "kv_cache:",
                                                   "  memory: 2GiB",
                                                   "  block_bytes: 32768",
                                                   "scheduler:",
                                                   "  mode: temporal",
                                                   "  max_prefill_tokens: 512",
                                                   "  max_batch_size: 32",
                                                   "  decode_priority: by_rate",
                                                   "  spatial_split: compute",
                                                   "models:",
                                                   "  - name: llama-3.2-1b",
                                                   "    path: models/llama",
                                                   "    dtype: bf16",
                                                   "    rate: 2.5",
                                                   "    max_context: 4096",
                                                   "    chat_template: llama3",
                                                   "  - name: tiny_gqa.v2",
                                                   "    synthetic:",
                                                   "      layers: 6",
                                                   "      hidden: 192",
                                                   "      heads: 6",
                                                   "      kv_heads: 2",
                                                   "      head_dim: 64",
                                                   "      intermediate: 512",
                                                   "      vocab: 512",
                                                   "      max_position: 1024",
                                                   "      rope_theta: 500000",
                                                   "      qkv_bias: true",
                                                   "      tie_embeddings: true",
                                                   "      seed: 42",
                                                   "    rate: 0.5",
                                               }));
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);
  EXPECT_EQ(config->server.grpc_address, "0.0.0.0:6000");
  EXPECT_EQ(config->server.metrics_address, "");
  EXPECT_DOUBLE_EQ(config->server.shutdown_grace_seconds, 2.5);
  EXPECT_EQ(config->server.max_queued_requests, 64);
  EXPECT_EQ(config->server.synthetic_dir, dir_ / "cache" / "synth");
  EXPECT_EQ(config->runtime.backend, Backend::kCpu);
  EXPECT_EQ(config->runtime.cpu_threads, 2);
  EXPECT_EQ(config->kv_cache.memory_bytes, int64_t{2} << 30);
  EXPECT_EQ(config->kv_cache.block_bytes, 32768);
  EXPECT_EQ(config->scheduler.mode, SchedulerMode::kTemporal);
  EXPECT_EQ(config->scheduler.max_prefill_tokens, 512);
  EXPECT_EQ(config->scheduler.max_batch_size, 32);
  EXPECT_EQ(config->scheduler.decode_priority, DecodePriority::kByRate);
  EXPECT_EQ(config->scheduler.spatial_split, SpatialSplit::kCompute);

  ASSERT_EQ(config->models.size(), 2u);
  const ModelConfig& hf = config->models[0];
  EXPECT_EQ(hf.name, "llama-3.2-1b");
  EXPECT_EQ(hf.path, dir_ / "models" / "llama");
  EXPECT_FALSE(hf.synthetic.has_value());
  EXPECT_EQ(hf.dtype, DType::kBFloat16);
  EXPECT_DOUBLE_EQ(hf.rate, 2.5);
  EXPECT_EQ(hf.max_context, 4096);
  EXPECT_EQ(hf.chat_template, "llama3");
  EXPECT_EQ(hf.line, 20);

  const ModelConfig& synthetic = config->models[1];
  EXPECT_EQ(synthetic.name, "tiny_gqa.v2");
  EXPECT_TRUE(synthetic.path.empty());
  EXPECT_FALSE(synthetic.dtype.has_value());
  EXPECT_EQ(synthetic.line, 26);
  ASSERT_TRUE(synthetic.synthetic.has_value());
  EXPECT_EQ(synthetic.synthetic->seed, 42u);
  const model::ModelSpec& spec = synthetic.synthetic->spec;
  EXPECT_EQ(spec.architecture, "LlamaForCausalLM");
  EXPECT_EQ(spec.model_type, "llama");
  EXPECT_EQ(spec.num_layers, 6);
  EXPECT_EQ(spec.hidden_size, 192);
  EXPECT_EQ(spec.num_heads, 6);
  EXPECT_EQ(spec.num_kv_heads, 2);
  EXPECT_EQ(spec.head_dim, 64);
  EXPECT_EQ(spec.intermediate_size, 512);
  EXPECT_EQ(spec.vocab_size, 512);
  EXPECT_EQ(spec.max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(spec.rope.theta, 500000);
  EXPECT_TRUE(spec.qkv_bias);
  EXPECT_TRUE(spec.tie_word_embeddings);
  EXPECT_EQ(spec.dtype, DType::kBFloat16);
  EXPECT_DOUBLE_EQ(spec.rms_norm_eps, 1e-5);
  EXPECT_EQ(spec.eos_token_ids, (std::vector<int32_t>{258, 256}));
}

TEST_F(ConfigTest, Defaults) {
  const fs::path path = Write("conf/minimal.yaml", Lines({
                                                       "models:",
                                                       "  - name: tiny",
                                                       "    synthetic:",
                                                       "      layers: 2",
                                                       "      hidden: 256",
                                                       "      heads: 8",
                                                       "      intermediate: 688",
                                                   }));
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  const Config defaults;
  EXPECT_EQ(config->server.grpc_address, defaults.server.grpc_address);
  EXPECT_EQ(config->server.metrics_address, defaults.server.metrics_address);
  EXPECT_EQ(config->server.max_queued_requests, defaults.server.max_queued_requests);
  EXPECT_EQ(config->server.synthetic_dir, dir_ / "conf" / ".cache" / "synthetic");
  EXPECT_EQ(config->runtime.backend, Backend::kAuto);
  EXPECT_EQ(config->runtime.cpu_threads, 0);
  EXPECT_EQ(config->kv_cache.memory_bytes, defaults.kv_cache.memory_bytes);
  EXPECT_EQ(config->kv_cache.block_bytes, defaults.kv_cache.block_bytes);
  EXPECT_EQ(config->scheduler.mode, SchedulerMode::kMuxserve);
  EXPECT_EQ(config->scheduler.decode_priority, DecodePriority::kByRate);
  EXPECT_EQ(config->scheduler.spatial_split, SpatialSplit::kMemory);

  ASSERT_EQ(config->models.size(), 1u);
  const ModelConfig& model = config->models[0];
  EXPECT_DOUBLE_EQ(model.rate, 1.0);
  EXPECT_EQ(model.max_context, 0);
  EXPECT_EQ(model.chat_template, "");
  ASSERT_TRUE(model.synthetic.has_value());
  EXPECT_EQ(model.synthetic->seed, 0u);
  EXPECT_FALSE(model.synthetic->device_weights);
  const model::ModelSpec& spec = model.synthetic->spec;
  EXPECT_EQ(spec.num_kv_heads, 8);
  EXPECT_EQ(spec.head_dim, 32);
  EXPECT_EQ(spec.vocab_size, 320);
  EXPECT_EQ(spec.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(spec.rope.theta, 10000);
  EXPECT_FALSE(spec.qkv_bias);
  EXPECT_FALSE(spec.tie_word_embeddings);
}

TEST_F(ConfigTest, SyntheticWeightsFileOrDevice) {
  absl::StatusOr<Config> config = ParseConfig(
      Lines({"models:", "  - name: on_disk",
             "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 128, weights: file}",
             "  - name: on_device",
             "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 128, weights: device, "
             "seed: 7}"}),
      (dir_ / "muxserve.yaml").string());
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->models.size(), 2u);
  ASSERT_TRUE(config->models[0].synthetic.has_value());
  EXPECT_FALSE(config->models[0].synthetic->device_weights);
  ASSERT_TRUE(config->models[1].synthetic.has_value());
  EXPECT_TRUE(config->models[1].synthetic->device_weights);
  EXPECT_EQ(config->models[1].synthetic->seed, 7u);
}

// Configs written before by_rate said true and false; they keep their meaning.
TEST_F(ConfigTest, DecodePriorityTakesItsEarlierBooleanSpellings) {
  for (const auto& [value, expected] :
       {std::pair{"none", DecodePriority::kNone}, std::pair{"false", DecodePriority::kNone},
        std::pair{"uniform", DecodePriority::kUniform}, std::pair{"true", DecodePriority::kUniform},
        std::pair{"by_rate", DecodePriority::kByRate}}) {
    absl::StatusOr<Config> config = ParseConfig(
        Lines({"scheduler:", absl::StrCat("  decode_priority: ", value), "models:", "  - name: m",
               "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 128}"}),
        (dir_ / "muxserve.yaml").string());
    ASSERT_TRUE(config.ok()) << value << ": " << config.status();
    EXPECT_EQ(config->scheduler.decode_priority, expected) << value;
  }
}

TEST_F(ConfigTest, PathsResolveAgainstTheConfigFolder) {
  MakeModelDir("hf/mistral");
  const fs::path path = Write("etc/muxserve/serve.yaml",
                              Lines({
                                  "server:",
                                  "  synthetic_dir: ../../synth",
                                  "models:",
                                  "  - name: mistral",
                                  "    path: ../../hf/mistral/",
                                  "  - name: absolute",
                                  absl::StrCat("    path: ", (dir_ / "hf/mistral").string()),
                              }));
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.synthetic_dir, dir_ / "synth");
  ASSERT_EQ(config->models.size(), 2u);
  EXPECT_TRUE(fs::equivalent(config->models[0].path, dir_ / "hf" / "mistral"));
  EXPECT_EQ(config->models[1].path, dir_ / "hf" / "mistral");
}

TEST_F(ConfigTest, RelativeOriginResolvesAgainstTheWorkingDirectory) {
  absl::StatusOr<Config> config = ParseConfig(Lines({"models:", "  - name: m",
                                                     "    synthetic: {layers: 1, hidden: 64, "
                                                     "heads: 2, intermediate: 128}"}),
                                              "relative/dir/muxserve.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.synthetic_dir,
            fs::current_path() / "relative" / "dir" / ".cache" / "synthetic");
}

TEST_F(ConfigTest, Float16DTypeParses) {
  for (const std::string name : {"float16", "fp16", "half"}) {
    absl::StatusOr<Config> config =
        ParseConfig(Lines({"models:", "  - name: m",
                           "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 128}",
                           "    dtype: " + name}),
                    "muxserve.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->models[0].dtype, DType::kFloat16) << name;
  }
}

TEST_F(ConfigTest, MissingModelDirectory) {
  const fs::path path = Write("a.yaml", Lines({"models:", "  - name: m", "    path: nowhere"}));
  absl::Status status = LoadConfig(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat(path.string(), ":3: key 'models[0].path'")));
  EXPECT_THAT(std::string(status.message()), HasSubstr((dir_ / "nowhere").string()));
  EXPECT_THAT(std::string(status.message()), HasSubstr("does not exist"));
}

TEST_F(ConfigTest, ModelDirectoryWithoutConfigJson) {
  fs::create_directories(dir_ / "empty");
  Write("not-a-dir", "x");
  const fs::path path = Write("a.yaml", Lines({"models:", "  - name: m", "    path: empty",
                                               "  - name: n", "    path: not-a-dir"}));
  absl::Status status = LoadConfig(path).status();
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat(path.string(), ":3: key 'models[0].path'")));
  EXPECT_THAT(std::string(status.message()), HasSubstr("has no config.json"));

  MakeModelDir("empty");
  status = LoadConfig(path).status();
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat(path.string(), ":5: key 'models[1].path'")));
  EXPECT_THAT(std::string(status.message()), HasSubstr("is not a directory"));
}

TEST_F(ConfigTest, MissingFile) {
  absl::Status status = LoadConfig(dir_ / "absent.yaml").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr((dir_ / "absent.yaml").string()));
}

TEST_F(ConfigTest, SyntaxErrorNamesFileAndLine) {
  const fs::path path = Write("bad.yaml", Lines({"models:", "  - name: m", "    rate: [1, 2"}));
  absl::Status status = LoadConfig(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat(path.string(), ":")));
  EXPECT_THAT(std::string(status.message()), HasSubstr("invalid YAML"));
}

TEST_F(ConfigTest, EmptyFileNeedsModels) {
  const fs::path path = Write("empty.yaml", "");
  absl::Status status = LoadConfig(path).status();
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat(path.string(), ":1: key 'models'")));
  EXPECT_THAT(std::string(status.message()), HasSubstr("required"));
}

// A model for the auth and limits tests: synthetic, so no directory is needed.
constexpr std::string_view kTinyModel[] = {
    "models:",          "  - name: m",    "    synthetic:",         "      layers: 1",
    "      hidden: 64", "      heads: 2", "      intermediate: 128"};

std::string WithTinyModel(std::initializer_list<std::string_view> lines) {
  std::vector<std::string_view> all(std::begin(kTinyModel), std::end(kTinyModel));
  all.insert(all.end(), lines.begin(), lines.end());
  return absl::StrJoin(all, "\n",
                       [](std::string* out, std::string_view line) {
                         absl::StrAppend(out, absl::string_view(line.data(), line.size()));
                       }) +
         "\n";
}

TEST_F(ConfigTest, AuthAndLimits) {
  Write("secrets/ci.token", "  file-secret-123\n");
  Write("tls/server.crt", "cert");
  Write("tls/server.key", "key");
  Write("tls/ca.crt", "ca");
  const fs::path path = Write("auth.yaml", WithTinyModel({
                                               "auth:",
                                               "  tokens:",
                                               "    - name: alice",
                                               "      token: alice-secret",
                                               "    - token_file: secrets/ci.token",
                                               "      models: [m]",
                                               "  tls:",
                                               "    cert: tls/server.crt",
                                               "    key: tls/server.key",
                                               "    client_ca: tls/ca.crt",
                                               "limits:",
                                               "  max_message_bytes: 64KiB",
                                               "  max_prompt_tokens: 100",
                                               "  max_stop_strings: 2",
                                               "  max_streams_per_client: 3",
                                           }));
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->auth.tokens.size(), 2u);
  EXPECT_EQ(config->auth.tokens[0].name, "alice");
  EXPECT_EQ(config->auth.tokens[0].secret, "alice-secret");
  EXPECT_TRUE(config->auth.tokens[0].models.empty());
  EXPECT_EQ(config->auth.tokens[1].name, "tokens[1]");
  EXPECT_EQ(config->auth.tokens[1].secret, "file-secret-123");
  EXPECT_EQ(config->auth.tokens[1].models, std::vector<std::string>{"m"});
  ASSERT_TRUE(config->auth.tls.has_value());
  EXPECT_EQ(config->auth.tls->cert, dir_ / "tls" / "server.crt");
  EXPECT_EQ(config->auth.tls->key, dir_ / "tls" / "server.key");
  EXPECT_EQ(config->auth.tls->client_ca, dir_ / "tls" / "ca.crt");
  EXPECT_EQ(config->limits.max_message_bytes, 64 * 1024);
  EXPECT_EQ(config->limits.max_prompt_tokens, 100);
  EXPECT_EQ(config->limits.max_stop_strings, 2);
  EXPECT_EQ(config->limits.max_streams_per_client, 3);
}

TEST_F(ConfigTest, AuthAndLimitsDefaults) {
  absl::StatusOr<Config> config = ParseConfig(WithTinyModel({}), dir_ / "a.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->auth.tokens.empty());
  EXPECT_FALSE(config->auth.tls.has_value());
  EXPECT_EQ(config->limits.max_message_bytes, int64_t{4} << 20);
  EXPECT_EQ(config->limits.max_prompt_tokens, 0);
  EXPECT_EQ(config->limits.max_stop_strings, 16);
  EXPECT_EQ(config->limits.max_streams_per_client, 0);
}

struct AuthErrorCase {
  std::string test_name;
  std::vector<std::string_view> lines;  // after the tiny model's 7 lines
  int line;
  std::string key;
  std::string reason;
};

class AuthErrorTest : public ConfigTest, public ::testing::WithParamInterface<AuthErrorCase> {};

TEST_P(AuthErrorTest, NamesLineAndKeyButNeverTheSecret) {
  Write("tls/server.crt", "cert");
  std::string text(WithTinyModel({}));
  for (std::string_view line : GetParam().lines) absl::StrAppend(&text, AsAbsl(line), "\n");
  const fs::path origin = dir_ / "auth.yaml";
  absl::Status status = ParseConfig(text, origin).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat(origin.string(), ":", GetParam().line, ": key '",
                                              GetParam().key, "'")));
  EXPECT_THAT(message, HasSubstr(GetParam().reason));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("s3cret")));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, AuthErrorTest,
    ::testing::Values(
        AuthErrorCase{"TokenAndFile",
                      {"auth:", "  tokens:", "    - token: s3cret-1", "      token_file: x"},
                      10,
                      "auth.tokens[0]",
                      "exactly one of 'token' and 'token_file'"},
        AuthErrorCase{"NoSecret",
                      {"auth:", "  tokens:", "    - name: a"},
                      10,
                      "auth.tokens[0]",
                      "one of 'token'"},
        AuthErrorCase{"MissingTokenFile",
                      {"auth:", "  tokens:", "    - token_file: absent.token"},
                      10,
                      "auth.tokens[0].token_file",
                      "does not exist"},
        AuthErrorCase{"SpaceInToken",
                      {"auth:", "  tokens:", "    - token: \"s3cret x\""},
                      10,
                      "auth.tokens[0].token",
                      "visible ASCII"},
        AuthErrorCase{"SameSecretTwice",
                      {"auth:", "  tokens:", "    - token: s3cret", "    - token: s3cret"},
                      11,
                      "auth.tokens[1]",
                      "the same secret as token 'tokens[0]'"},
        AuthErrorCase{"DuplicateName",
                      {"auth:", "  tokens:", "    - {name: a, token: s3cret-1}",
                       "    - {name: a, token: s3cret-2}"},
                      11,
                      "auth.tokens[1].name",
                      "duplicate token name 'a'"},
        AuthErrorCase{"UnknownModel",
                      {"auth:", "  tokens:", "    - token: s3cret", "      models: [m, other]"},
                      11,
                      "auth.tokens[0].models",
                      "'other' is not a model"},
        AuthErrorCase{"TokensNotAList",
                      {"auth:", "  tokens: s3cret"},
                      9,
                      "auth.tokens",
                      "expected a non-empty list of tokens, got a scalar"},
        AuthErrorCase{"UnknownTokenKey",
                      {"auth:", "  tokens:", "    - token: s3cret", "      scope: all"},
                      11,
                      "auth.tokens[0].scope",
                      "unknown key"},
        AuthErrorCase{"TlsWithoutKey",
                      {"auth:", "  tls:", "    cert: tls/server.crt"},
                      10,
                      "auth.tls.key",
                      "required"},
        AuthErrorCase{"TlsMissingCert",
                      {"auth:", "  tls:", "    cert: nope.crt", "    key: k"},
                      10,
                      "auth.tls.cert",
                      "does not exist"},
        AuthErrorCase{"MessageTooSmall",
                      {"limits:", "  max_message_bytes: 10"},
                      9,
                      "limits.max_message_bytes",
                      "between 1KiB and 2GiB"},
        AuthErrorCase{"NegativeStreams",
                      {"limits:", "  max_streams_per_client: -1"},
                      9,
                      "limits.max_streams_per_client",
                      "must be >= 0"},
        AuthErrorCase{
            "UnknownLimit", {"limits:", "  max_tokens: 5"}, 9, "limits.max_tokens", "unknown key"}),
    [](const ::testing::TestParamInfo<AuthErrorCase>& info) { return info.param.test_name; });

TEST_F(ConfigTest, Names) {
  EXPECT_EQ(BackendName(Backend::kAuto), "auto");
  EXPECT_EQ(BackendName(Backend::kCpu), "cpu");
  EXPECT_EQ(BackendName(Backend::kCuda), "cuda");
  EXPECT_EQ(SchedulerModeName(SchedulerMode::kMuxserve), "muxserve");
  EXPECT_EQ(SchedulerModeName(SchedulerMode::kTemporal), "temporal");
  EXPECT_EQ(SchedulerModeName(SchedulerMode::kSpatial), "spatial");
  EXPECT_EQ(SpatialSplitName(SpatialSplit::kMemory), "memory");
  EXPECT_EQ(SpatialSplitName(SpatialSplit::kCompute), "compute");
}

TEST(ShippedConfigs, DefaultLoads) {
  absl::StatusOr<Config> config =
      LoadConfig(fs::path(MUXSERVE_SOURCE_DIR) / "configs" / "default.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->runtime.backend, Backend::kCpu);
  EXPECT_EQ(config->server.grpc_address, "127.0.0.1:50051");
  EXPECT_EQ(config->server.metrics_address, "127.0.0.1:9400");
  EXPECT_EQ(config->kv_cache.memory_bytes, int64_t{64} << 20);
  EXPECT_EQ(config->server.synthetic_dir,
            (fs::path(MUXSERVE_SOURCE_DIR) / ".cache" / "synthetic").lexically_normal());
  ASSERT_EQ(config->models.size(), 3u);
  for (const ModelConfig& model : config->models) {
    EXPECT_TRUE(model.synthetic.has_value()) << model.name;
  }
}

// The HF example names directories that exist only where models were downloaded: everything but
// the model paths must be valid.
TEST(ShippedConfigs, HfExampleIsValidExceptForItsModelDirectories) {
  absl::StatusOr<Config> config =
      LoadConfig(fs::path(MUXSERVE_SOURCE_DIR) / "configs" / "example-hf.yaml");
  if (!config.ok()) {
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(".path'")) << config.status();
    EXPECT_THAT(std::string(config.status().message()), HasSubstr("does not exist"))
        << config.status();
  }
}

struct ErrorCase {
  std::string test_name;
  std::string yaml;
  int line;
  std::string key;
  std::string reason;
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.test_name; }

constexpr std::string_view kModel = "  - name: m";
constexpr std::string_view kShape =
    "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 128}";

class ConfigErrorTest : public ConfigTest, public ::testing::WithParamInterface<ErrorCase> {};

TEST_P(ConfigErrorTest, NamesFileLineAndKey) {
  const ErrorCase& c = GetParam();
  const fs::path path = Write("case.yaml", c.yaml);
  absl::StatusOr<Config> config = LoadConfig(path);
  ASSERT_FALSE(config.ok()) << "accepted:\n" << c.yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr(absl::StrCat(path.string(), ":", c.line, ": key '", c.key, "': ")));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.reason));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ConfigErrorTest,
    ::testing::Values(
        ErrorCase{"UnknownTopLevelKey", Lines({"models:", kModel, kShape, "modles: []"}), 4,
                  "modles",
                  "unknown key (allowed: server, auth, limits, runtime, kv_cache, scheduler, models"},
        ErrorCase{"UnknownServerKey",
                  Lines({"server:", "  grpc_adress: 1.2.3.4:5", "models:", kModel, kShape}), 2,
                  "server.grpc_adress", "allowed: grpc_address, metrics_address"},
        ErrorCase{"DuplicateKey", Lines({"models:", kModel, kShape, "    rate: 1", "    rate: 2"}),
                  5, "models[0].rate", "duplicate key (first at line 4)"},
        ErrorCase{"SectionNotAMap", Lines({"server: 5", "models:", kModel, kShape}), 1, "server",
                  "expected a map with keys grpc_address"},
        ErrorCase{"RateNotANumber", Lines({"models:", kModel, kShape, "    rate: fast"}), 4,
                  "models[0].rate", "expected a number, got 'fast'"},
        ErrorCase{"RateZero", Lines({"models:", kModel, kShape, "    rate: 0"}), 4,
                  "models[0].rate", "must be > 0"},
        ErrorCase{"RateOfSecondModel",
                  Lines({"models:", kModel, kShape, "  - name: n", kShape, "    rate: -2"}), 6,
                  "models[1].rate", "must be > 0"},
        ErrorCase{"RateInfinite", Lines({"models:", kModel, kShape, "    rate: .inf"}), 4,
                  "models[0].rate", "expected a number"},
        ErrorCase{"MaxContextNegative", Lines({"models:", kModel, kShape, "    max_context: -1"}),
                  4, "models[0].max_context", "must be >= 0"},
        ErrorCase{"MaxContextBeyondPositions",
                  Lines({"models:", kModel, kShape, "    max_context: 4096"}), 4,
                  "models[0].max_context", "exceeds the model's max_position (2048)"},
        ErrorCase{"SpatialSplitUnknown",
                  Lines({"scheduler:", "  spatial_split: rate", "models:", kModel, kShape}), 2,
                  "scheduler.spatial_split", "memory"},
        ErrorCase{"DecodePriorityUnknown",
                  Lines({"scheduler:", "  decode_priority: 3", "models:", kModel, kShape}), 2,
                  "scheduler.decode_priority",
                  "unknown value '3' (one of 'none', 'uniform', 'by_rate'"},
        ErrorCase{"IntegerExpected",
                  Lines({"scheduler:", "  max_batch_size: 1.5", "models:", kModel, kShape}), 2,
                  "scheduler.max_batch_size", "expected an integer, got '1.5'"},
        ErrorCase{"QuotedNumberIsAString",
                  Lines({"models:", kModel, "    synthetic:", "      layers: \"2\"",
                         "      hidden: 64", "      heads: 2", "      intermediate: 128"}),
                  4, "models[0].synthetic.layers", "expected an integer, got the quoted string"},
        ErrorCase{"MemoryZero", Lines({"kv_cache:", "  memory: 0", "models:", kModel, kShape}), 2,
                  "kv_cache.memory", "must be > 0"},
        ErrorCase{"MemoryBadUnit",
                  Lines({"kv_cache:", "  memory: 12 bananas", "models:", kModel, kShape}), 2,
                  "kv_cache.memory", "unknown unit 'bananas'"},
        ErrorCase{"MemoryNegative",
                  Lines({"kv_cache:", "  memory: -5MiB", "models:", kModel, kShape}), 2,
                  "kv_cache.memory", "cannot be negative"},
        ErrorCase{"BlockBytesNotPowerOfTwo",
                  Lines({"kv_cache:", "  block_bytes: 3000", "models:", kModel, kShape}), 2,
                  "kv_cache.block_bytes", "must be a power of two >= 1024"},
        ErrorCase{"BlockBytesTooSmall",
                  Lines({"kv_cache:", "  block_bytes: 512", "models:", kModel, kShape}), 2,
                  "kv_cache.block_bytes", "must be a power of two >= 1024, got 512"},
        ErrorCase{"MemoryBelowOneBlock",
                  Lines({"kv_cache:", "  memory: 1KiB", "  block_bytes: 2KiB", "models:", kModel,
                         kShape}),
                  2, "kv_cache.memory", "at least one block"},
        ErrorCase{"MaxPrefillTokensZero",
                  Lines({"scheduler:", "  max_prefill_tokens: 0", "models:", kModel, kShape}), 2,
                  "scheduler.max_prefill_tokens", "must be >= 1"},
        ErrorCase{"UnknownSchedulerMode",
                  Lines({"scheduler:", "  mode: fifo", "models:", kModel, kShape}), 2,
                  "scheduler.mode", "unknown value 'fifo' (one of 'muxserve', 'temporal'"},
        ErrorCase{"UnknownBackend",
                  Lines({"runtime:", "  backend: tpu", "models:", kModel, kShape}), 2,
                  "runtime.backend", "unknown value 'tpu'"},
        ErrorCase{"NegativeCpuThreads",
                  Lines({"runtime:", "  cpu_threads: -1", "models:", kModel, kShape}), 2,
                  "runtime.cpu_threads", "must be >= 0"},
        ErrorCase{"NegativeGrace",
                  Lines({"server:", "  shutdown_grace_seconds: -1", "models:", kModel, kShape}), 2,
                  "server.shutdown_grace_seconds", "must be >= 0"},
        ErrorCase{"NoQueue",
                  Lines({"server:", "  max_queued_requests: 0", "models:", kModel, kShape}), 2,
                  "server.max_queued_requests", "must be >= 1"},
        ErrorCase{"AddressWithoutPort",
                  Lines({"server:", "  grpc_address: localhost", "models:", kModel, kShape}), 2,
                  "server.grpc_address", "expected host:port"},
        ErrorCase{"EmptyGrpcAddress",
                  Lines({"server:", "  grpc_address: \"\"", "models:", kModel, kShape}), 2,
                  "server.grpc_address", "expected host:port"},
        ErrorCase{
            "BadPort",
            Lines({"server:", "  metrics_address: 127.0.0.1:70000", "models:", kModel, kShape}), 2,
            "server.metrics_address", "bad port"},
        ErrorCase{"BareIpv6",
                  Lines({"server:", "  grpc_address: ::1:50051", "models:", kModel, kShape}), 2,
                  "server.grpc_address", "IPv6 hosts go in brackets"},
        ErrorCase{"SamePorts",
                  Lines({"server:", "  grpc_address: 127.0.0.1:7000",
                         "  metrics_address: 127.0.0.1:7000", "models:", kModel, kShape}),
                  3, "server.metrics_address", "must differ from grpc_address"},
        ErrorCase{"NoModels", Lines({"server:", "  grpc_address: 127.0.0.1:1"}), 1, "models",
                  "required"},
        ErrorCase{"EmptyModelList", Lines({"runtime: {}", "models: []"}), 2, "models",
                  "at least one model is required"},
        ErrorCase{"ModelsNotAList", Lines({"models:", "  name: m"}), 2, "models",
                  "expected a list of models"},
        ErrorCase{"ModelNotAMap", Lines({"models:", "  - m"}), 2, "models[0]",
                  "expected a map with keys name, path"},
        ErrorCase{"DuplicateModelName",
                  Lines({"models:", kModel, kShape, "  - name: n", kShape, kModel, kShape}), 6,
                  "models[2].name", "duplicate model name 'm' (first defined at line 2)"},
        ErrorCase{"DuplicateNameComesBeforeOtherErrors",
                  Lines({"models:", kModel, kShape, kModel, "    path: nowhere"}), 4,
                  "models[1].name", "duplicate model name 'm' (first defined at line 2)"},
        ErrorCase{"ModelWithoutName", Lines({"models:", "  - rate: 1", kShape}), 2,
                  "models[0].name", "required"},
        ErrorCase{"BadModelName", Lines({"models:", "  - name: my model", kShape}), 2,
                  "models[0].name", "bad model name 'my model'"},
        ErrorCase{"PathAndSynthetic", Lines({"models:", kModel, kShape, "    path: x"}), 2,
                  "models[0]", "exactly one of 'path' and 'synthetic'"},
        ErrorCase{"NeitherPathNorSynthetic", Lines({"models:", kModel, "    rate: 2"}), 2,
                  "models[0]", "one of 'path'"},
        ErrorCase{"SyntheticEmpty", Lines({"models:", kModel, "    synthetic:"}), 3,
                  "models[0].synthetic", "expected a map with the model's shape"},
        ErrorCase{"SyntheticMissingLayers",
                  Lines({"models:", kModel, "    synthetic:", "      hidden: 64", "      heads: 2",
                         "      intermediate: 128"}),
                  4, "models[0].synthetic.layers", "required"},
        ErrorCase{"SyntheticUnknownKey",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128", "      experts: 8"}),
                  8, "models[0].synthetic.experts", "unknown key (allowed: layers, hidden"},
        ErrorCase{"SyntheticSmallVocab",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128", "      vocab: 100"}),
                  8, "models[0].synthetic.vocab", "must be >= 259"},
        ErrorCase{
            "SyntheticKvHeadsMustDivideHeads",
            Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 256",
                   "      heads: 8", "      kv_heads: 3", "      intermediate: 128"}),
            7, "models[0].synthetic.kv_heads", "must divide heads (8), got 3"},
        ErrorCase{"SyntheticHiddenNotDivisible",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1",
                         "      hidden: 100", "      heads: 3", "      intermediate: 128"}),
                  6, "models[0].synthetic.heads", "set head_dim"},
        ErrorCase{"SyntheticOddHeadDim",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      head_dim: 33", "      intermediate: 128"}),
                  7, "models[0].synthetic.head_dim", "must be even"},
        ErrorCase{"SyntheticZeroLayers",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 0", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128"}),
                  4, "models[0].synthetic.layers", "must be >= 1"},
        ErrorCase{"SyntheticBadBool",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128", "      qkv_bias: maybe"}),
                  8, "models[0].synthetic.qkv_bias", "expected true or false"},
        ErrorCase{"SyntheticNegativeSeed",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128", "      seed: -1"}),
                  8, "models[0].synthetic.seed", "expected a non-negative integer"},
        ErrorCase{"SyntheticUnknownWeights",
                  Lines({"models:", kModel, "    synthetic:", "      layers: 1", "      hidden: 64",
                         "      heads: 2", "      intermediate: 128", "      weights: gpu"}),
                  8, "models[0].synthetic.weights",
                  "unknown value 'gpu' (one of 'file', 'device')"},
        ErrorCase{"UnknownDType", Lines({"models:", kModel, kShape, "    dtype: int8"}), 4,
                  "models[0].dtype", "unknown dtype 'int8'"},
        ErrorCase{"UnknownChatTemplate",
                  Lines({"models:", kModel, kShape, "    chat_template: vicuna"}), 4,
                  "models[0].chat_template", "unknown value 'vicuna'"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.test_name; });

}  // namespace
}  // namespace muxserve::config
