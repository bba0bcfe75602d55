#include "muxserve/model/model_spec.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::model {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama2_7b[] = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "tie_word_embeddings": false,
  "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": true,
  "vocab_size": 32000})";

constexpr char kLlama31_8b[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

constexpr char kQwen2_05b[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

constexpr char kMistral_7b[] = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
  "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "vocab_size": 32000})";

// kLlama2_7b with one key changed (or removed when `value` is "<erase>").
std::string Llama2With(const std::string& key, const std::string& value) {
  nlohmann::json config = nlohmann::json::parse(kLlama2_7b);
  if (value == "<erase>") {
    config.erase(key);
  } else {
    config[key] = nlohmann::json::parse(value);
  }
  return config.dump();
}

TEST(ModelSpecTest, ParsesLlama2) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kLlama2_7b, "llama2/config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->architecture, "LlamaForCausalLM");
  EXPECT_EQ(spec->model_type, "llama");
  EXPECT_EQ(spec->vocab_size, 32000);
  EXPECT_EQ(spec->hidden_size, 4096);
  EXPECT_EQ(spec->intermediate_size, 11008);
  EXPECT_EQ(spec->num_layers, 32);
  EXPECT_EQ(spec->num_heads, 32);
  EXPECT_EQ(spec->num_kv_heads, 32);
  EXPECT_EQ(spec->head_dim, 128);
  EXPECT_EQ(spec->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(spec->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(spec->rope.theta, 10000.0);
  EXPECT_EQ(spec->rope.scaling, RopeScaling::kNone);
  EXPECT_FALSE(spec->qkv_bias);
  EXPECT_FALSE(spec->tie_word_embeddings);
  EXPECT_EQ(spec->dtype, DType::kFloat16);
  EXPECT_EQ(spec->bos_token_ids, std::vector<int32_t>{1});
  EXPECT_EQ(spec->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(spec->sliding_window, 0);
  EXPECT_EQ(spec->NumParameters(), 6738415616);  // Llama 2 7B's published count
  EXPECT_EQ(spec->WeightBytes(DType::kBFloat16), 2 * 6738415616);
  EXPECT_EQ(spec->KvBytesPerToken(DType::kFloat16), 2 * 32 * 4096 * 2);
}

TEST(ModelSpecTest, ParsesLlama31WithLlama3RopeAndGqa) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kLlama31_8b, "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_kv_heads, 8);
  EXPECT_EQ(spec->q_size(), 4096);
  EXPECT_EQ(spec->kv_size(), 1024);
  EXPECT_EQ(spec->rope.scaling, RopeScaling::kLlama3);
  EXPECT_DOUBLE_EQ(spec->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(spec->rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(spec->rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(spec->rope.high_freq_factor, 4.0);
  EXPECT_EQ(spec->rope.original_max_position, 8192);
  EXPECT_EQ(spec->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(spec->NumParameters(), 8030261248);  // Llama 3.1 8B's published count
  EXPECT_EQ(spec->KvBytesPerToken(DType::kBFloat16), 2 * 32 * 1024 * 2);
}

TEST(ModelSpecTest, ParsesQwen2WithImpliedBiasAndTiedEmbeddings) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kQwen2_05b, "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->qkv_bias);
  EXPECT_TRUE(spec->tie_word_embeddings);
  EXPECT_EQ(spec->head_dim, 64);
  EXPECT_EQ(spec->sliding_window, 0);           // use_sliding_window is false
  EXPECT_EQ(spec->NumParameters(), 494032768);  // Qwen2-0.5B's published count
}

TEST(ModelSpecTest, ParsesMistralSlidingWindow) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kMistral_7b, "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->architecture, "MistralForCausalLM");
  EXPECT_EQ(spec->sliding_window, 4096);
  EXPECT_EQ(spec->NumParameters(), 7241732096);  // Mistral 7B's published count
}

// The loader and the planner size a model by this one rule.
TEST(ModelSpecTest, GpuDTypeIsTheConfiguredOneElseTheCheckpointsIn16Bits) {
  ModelSpec spec;
  spec.dtype = DType::kFloat16;
  EXPECT_EQ(spec.GpuDType(std::nullopt), DType::kFloat16);
  EXPECT_EQ(spec.GpuDType(DType::kBFloat16), DType::kBFloat16);
  spec.dtype = DType::kFloat32;
  EXPECT_EQ(spec.GpuDType(std::nullopt), DType::kBFloat16);
  EXPECT_EQ(spec.GpuDType(DType::kFloat16), DType::kFloat16);
}

TEST(ModelSpecTest, DefaultsKvHeadsHeadDimAndRopeType) {
  std::string text = Llama2With("num_key_value_heads", "<erase>");
  nlohmann::json config = nlohmann::json::parse(text);
  config["head_dim"] = nullptr;
  config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  config["eos_token_id"] = nullptr;
  config.erase("torch_dtype");
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(config.dump(), "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_kv_heads, 32);
  EXPECT_EQ(spec->head_dim, 128);
  EXPECT_EQ(spec->rope.scaling, RopeScaling::kLinear);
  EXPECT_DOUBLE_EQ(spec->rope.factor, 2.0);
  EXPECT_TRUE(spec->eos_token_ids.empty());
  EXPECT_EQ(spec->dtype, DType::kFloat32);  // HF loads float32 when torch_dtype is absent
}

TEST(ModelSpecTest, ExplicitHeadDimOverridesHiddenOverHeads) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(Llama2With("head_dim", "256"), "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->head_dim, 256);
  EXPECT_EQ(spec->q_size(), 32 * 256);
}

TEST(ModelSpecTest, DefaultRopeTypeMeansNoScaling) {
  absl::StatusOr<ModelSpec> spec =
      ParseModelSpec(Llama2With("rope_scaling", R"({"rope_type": "default"})"), "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->rope.scaling, RopeScaling::kNone);
}

struct ErrorCase {
  std::string name;
  std::string json;
  std::string expected;  // substring of the message
  friend void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
};

class ModelSpecErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ModelSpecErrorTest, NamesFileAndKey) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(GetParam().json, "/models/x/config.json");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("/models/x/config.json"));
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, ModelSpecErrorTest,
    ::testing::Values(
        ErrorCase{"InvalidJson", "{\"hidden_size\": ", "invalid JSON"},
        ErrorCase{"NotAnObject", "[1, 2]", "expected a JSON object"},
        ErrorCase{"MissingHidden", Llama2With("hidden_size", "<erase>"), "'hidden_size'"},
        ErrorCase{"MissingModelType", Llama2With("model_type", "<erase>"), "'model_type'"},
        ErrorCase{"MissingVocab", Llama2With("vocab_size", "<erase>"), "'vocab_size'"},
        ErrorCase{"MissingLayers", Llama2With("num_hidden_layers", "<erase>"),
                  "'num_hidden_layers'"},
        ErrorCase{"ZeroLayers", Llama2With("num_hidden_layers", "0"),
                  "'num_hidden_layers': must be positive"},
        ErrorCase{"NegativeVocab", Llama2With("vocab_size", "-5"), "'vocab_size': must be"},
        ErrorCase{"HugeHidden", Llama2With("hidden_size", "1099511627776"), "too large"},
        ErrorCase{"StringSize", Llama2With("hidden_size", "\"4096\""),
                  "'hidden_size': expected an integer"},
        ErrorCase{"FloatSize", Llama2With("intermediate_size", "11008.5"),
                  "'intermediate_size': expected an integer"},
        ErrorCase{"KvHeadsDoNotDivide", Llama2With("num_key_value_heads", "5"),
                  "'num_key_value_heads': 5 does not divide num_attention_heads 32"},
        ErrorCase{"HeadsDoNotDivideHidden",
                  [] {
                    nlohmann::json config = nlohmann::json::parse(kLlama2_7b);
                    config["num_attention_heads"] = 30;
                    config["num_key_value_heads"] = 10;
                    return config.dump();
                  }(),
                  "'num_attention_heads': 30 does not divide hidden_size 4096"},
        ErrorCase{"ZeroHeadDim", Llama2With("head_dim", "0"), "'head_dim': must be positive"},
        ErrorCase{"UnsupportedModelType", Llama2With("model_type", "\"gpt2\""),
                  "'model_type': unsupported model type 'gpt2'"},
        ErrorCase{"UnsupportedArchitecture", Llama2With("architectures", "[\"GPT2LMHeadModel\"]"),
                  "'architectures': unsupported architecture 'GPT2LMHeadModel'"},
        ErrorCase{"EmptyArchitectures", Llama2With("architectures", "[]"), "'architectures'"},
        ErrorCase{"UnknownRopeType", Llama2With("rope_scaling", R"({"rope_type": "yarn"})"),
                  "'rope_scaling.rope_type': unsupported rope scaling 'yarn'"},
        ErrorCase{"UnknownLegacyRopeType",
                  Llama2With("rope_scaling", R"({"type": "dynamic", "factor": 2.0})"),
                  "'rope_scaling.type': unsupported rope scaling 'dynamic'"},
        ErrorCase{"RopeWithoutType", Llama2With("rope_scaling", R"({"factor": 2.0})"),
                  "'rope_scaling.rope_type'"},
        ErrorCase{"LinearWithoutFactor", Llama2With("rope_scaling", R"({"type": "linear"})"),
                  "'rope_scaling.factor': missing"},
        ErrorCase{"Llama3WithoutOriginal",
                  Llama2With("rope_scaling", R"({"rope_type": "llama3", "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0})"),
                  "'rope_scaling.original_max_position_embeddings'"},
        ErrorCase{"RopeScalingNotObject", Llama2With("rope_scaling", "3"),
                  "'rope_scaling': expected an object"},
        ErrorCase{"NegativeTheta", Llama2With("rope_theta", "-1.0"), "'rope_theta'"},
        ErrorCase{"BadDtype", Llama2With("torch_dtype", "\"int8\""),
                  "'torch_dtype': unknown dtype 'int8'"},
        ErrorCase{"EosOutOfVocab", Llama2With("eos_token_id", "[2, 32000]"),
                  "'eos_token_id': token id 32000 is outside the vocabulary"},
        ErrorCase{"EosNotInt", Llama2With("eos_token_id", "\"</s>\""), "'eos_token_id'"},
        ErrorCase{"TieNotBool", Llama2With("tie_word_embeddings", "1"),
                  "'tie_word_embeddings': expected true or false"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(ModelSpecTest, LoadReadsConfigJsonOfDirectory) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "config.json", kQwen2_05b);
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model_type, "qwen2");
}

TEST(ModelSpecTest, LoadOfMissingFileIsNotFoundNamingPath) {
  testing::TempDir dir;
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr((dir.path() / "config.json").string()));
}

TEST(ModelSpecTest, LoadErrorNamesThePath) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "config.json", Llama2With("hidden_size", "0"));
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr((dir.path() / "config.json").string()));
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("'hidden_size'"));
}

void ExpectSameSpec(const ModelSpec& a, const ModelSpec& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_DOUBLE_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_DOUBLE_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.scaling, b.rope.scaling);
  EXPECT_DOUBLE_EQ(a.rope.factor, b.rope.factor);
  EXPECT_DOUBLE_EQ(a.rope.low_freq_factor, b.rope.low_freq_factor);
  EXPECT_DOUBLE_EQ(a.rope.high_freq_factor, b.rope.high_freq_factor);
  EXPECT_EQ(a.rope.original_max_position, b.rope.original_max_position);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.bos_token_ids, b.bos_token_ids);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
}

TEST(ModelSpecTest, ToJsonRoundTrips) {
  for (const char* text : {kLlama2_7b, kLlama31_8b, kQwen2_05b, kMistral_7b}) {
    absl::StatusOr<ModelSpec> spec = ParseModelSpec(text, "original");
    ASSERT_TRUE(spec.ok()) << spec.status();
    std::string json = ModelSpecToJson(*spec);
    absl::StatusOr<ModelSpec> again = ParseModelSpec(json, "written");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << json;
    ExpectSameSpec(*spec, *again);
  }
}

TEST(ModelSpecTest, ToJsonWritesHfKeys) {
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(kLlama31_8b, "config.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  nlohmann::json config = nlohmann::json::parse(ModelSpecToJson(*spec));
  EXPECT_EQ(config["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(config["num_hidden_layers"], 32);
  EXPECT_EQ(config["num_key_value_heads"], 8);
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(config["eos_token_id"], nlohmann::json({128001, 128008, 128009}));
  EXPECT_EQ(config["bos_token_id"], 128000);
}

TEST(ModelSpecTest, FlopsPerTokenFollowsTheDocumentedFormula) {
  ModelSpec spec;
  spec.vocab_size = 100;
  spec.hidden_size = 8;
  spec.intermediate_size = 16;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 2;
  // q = 8, kv = 4: per layer 8*8 + 2*8*4 + 8*8 + 3*8*16 = 576; lm_head 800.
  const double matmuls = 2.0 * (2 * 576 + 800);
  EXPECT_DOUBLE_EQ(spec.FlopsPerToken(0), matmuls);
  EXPECT_DOUBLE_EQ(spec.FlopsPerToken(10), matmuls + 4.0 * 2 * 10 * 8);
}

}  // namespace
}  // namespace muxserve::model
