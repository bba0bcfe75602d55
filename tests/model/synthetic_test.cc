#include "muxserve/model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/model/weights.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kFiles[] = {"config.json", "model.safetensors", "tokenizer.json",
                                  "tokenizer_config.json", "generation_config.json"};

SyntheticModelOptions TinyOptions() {
  SyntheticModelOptions options;
  options.spec.model_type = "llama";
  options.spec.vocab_size = 320;
  options.spec.hidden_size = 64;
  options.spec.intermediate_size = 96;
  options.spec.num_layers = 2;
  options.spec.num_heads = 4;
  options.spec.num_kv_heads = 2;
  options.spec.head_dim = 16;
  options.spec.max_position_embeddings = 256;
  options.seed = 42;
  options.weight_dtype = DType::kFloat32;
  return options;
}

std::vector<float> ReadFloats(const TensorInfo& info) {
  std::vector<float> values(static_cast<size_t>(info.NumElements()));
  ConvertToFloat(info.data.data(), info.dtype, values.size(), values.data());
  return values;
}

TEST(SyntheticTest, SameOptionsGiveSameBytes) {
  testing::TempDir first;
  testing::TempDir second;
  ASSERT_TRUE(WriteSyntheticModel(first.path(), TinyOptions()).ok());
  ASSERT_TRUE(WriteSyntheticModel(second.path(), TinyOptions()).ok());
  for (const char* file : kFiles) {
    const std::string a = testing::ReadFile(first.path() / file);
    EXPECT_FALSE(a.empty()) << file;
    EXPECT_EQ(a, testing::ReadFile(second.path() / file)) << file;
  }
  SyntheticModelOptions other = TinyOptions();
  other.seed = 43;
  testing::TempDir third;
  ASSERT_TRUE(WriteSyntheticModel(third.path(), other).ok());
  EXPECT_NE(testing::ReadFile(first.path() / "model.safetensors"),
            testing::ReadFile(third.path() / "model.safetensors"));
  EXPECT_EQ(testing::ReadFile(first.path() / "tokenizer.json"),
            testing::ReadFile(third.path() / "tokenizer.json"));
}

TEST(SyntheticTest, LoadsBackThroughSpecWeightsAndTokenizer) {
  testing::TempDir dir;
  SyntheticModelOptions options = TinyOptions();
  options.weight_dtype = DType::kBFloat16;
  ASSERT_TRUE(WriteSyntheticModel(dir.path(), options).ok());

  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->architecture, "LlamaForCausalLM");
  EXPECT_EQ(spec->hidden_size, 64);
  EXPECT_EQ(spec->num_kv_heads, 2);
  EXPECT_EQ(spec->head_dim, 16);
  EXPECT_EQ(spec->dtype, DType::kBFloat16);
  EXPECT_THAT(spec->eos_token_ids, ElementsAre(258, 256));
  EXPECT_TRUE(spec->bos_token_ids.empty());

  absl::StatusOr<std::unique_ptr<Weights>> weights = Weights::Load(dir.path(), *spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ((*weights)->TotalBytes(), spec->WeightBytes(DType::kBFloat16));
  for (const auto& [name, info] : (*weights)->tensors()) {
    EXPECT_EQ(info->dtype, DType::kBFloat16) << name;
  }

  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(dir.path());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), kSyntheticTokenizerSize);
  EXPECT_FALSE((*tokenizer)->bos_id().has_value());
  EXPECT_THAT((*tokenizer)->eos_ids(), ElementsAre(258, 256));
  EXPECT_EQ((*tokenizer)->TokenId("<|im_start|>"), 257);
  EXPECT_TRUE((*tokenizer)->IsSpecial(256));
  EXPECT_FALSE((*tokenizer)->IsSpecial(255));

  // One token per byte, in byte order.
  const std::string text = "Hi é 👋";
  std::vector<int32_t> ids = (*tokenizer)->Encode(text, /*add_bos=*/true);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(ids[i], static_cast<uint8_t>(text[i]));
  EXPECT_EQ((*tokenizer)->Decode(ids, false), text);
  EXPECT_THAT((*tokenizer)->Encode("<|im_start|>a<|im_end|>", false), ElementsAre(257, 97, 258));

  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Recognize((*tokenizer)->chat_template());
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->kind(), ChatTemplateKind::kChatML);
}

TEST(SyntheticTest, TokenizerJsonIsHfShaped) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSyntheticModel(dir.path(), TinyOptions()).ok());
  nlohmann::json root = nlohmann::json::parse(testing::ReadFile(dir.path() / "tokenizer.json"));
  EXPECT_EQ(root["model"]["type"], "BPE");
  EXPECT_EQ(root["model"]["vocab"].size(), 256u);
  EXPECT_EQ(root["model"]["vocab"]["Ġ"], 32);  // the space byte
  EXPECT_EQ(root["model"]["vocab"]["A"], 65);
  EXPECT_TRUE(root["model"]["merges"].empty());
  EXPECT_EQ(root["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(root["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(root["added_tokens"].size(), 3u);
  EXPECT_EQ(root["added_tokens"][2]["content"], "<|im_end|>");
  EXPECT_EQ(root["added_tokens"][2]["id"], 258);
  EXPECT_EQ(root["added_tokens"][2]["special"], true);
  nlohmann::json config =
      nlohmann::json::parse(testing::ReadFile(dir.path() / "tokenizer_config.json"));
  EXPECT_EQ(config["eos_token"], "<|im_end|>");
  EXPECT_TRUE(config["bos_token"].is_null());
  EXPECT_EQ(config["add_bos_token"], false);
  nlohmann::json generation =
      nlohmann::json::parse(testing::ReadFile(dir.path() / "generation_config.json"));
  EXPECT_EQ(generation["eos_token_id"], nlohmann::json({258, 256}));
}

TEST(SyntheticTest, Qwen2ShapeHasBiasesAndNoLmHeadWhenTied) {
  testing::TempDir dir;
  SyntheticModelOptions options = TinyOptions();
  options.spec.model_type = "qwen2";
  options.spec.tie_word_embeddings = true;
  ASSERT_TRUE(WriteSyntheticModel(dir.path(), options).ok());
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->qkv_bias);
  EXPECT_EQ(spec->architecture, "Qwen2ForCausalLM");
  absl::StatusOr<std::unique_ptr<Weights>> weights = Weights::Load(dir.path(), *spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_TRUE((*weights)->Has("model.layers.1.self_attn.v_proj.bias"));
  EXPECT_FALSE((*weights)->Has("lm_head.weight"));
}

TEST(SyntheticTest, WeightScalesAreAsDocumented) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSyntheticModel(dir.path(), TinyOptions()).ok());
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok());
  auto weights = Weights::Load(dir.path(), *spec);
  ASSERT_TRUE(weights.ok());
  auto stats = [&](const std::string& name) {
    std::vector<float> values = ReadFloats(**(*weights)->Get(name));
    double sum = 0;
    double squares = 0;
    for (float v : values) {
      sum += v;
      squares += static_cast<double>(v) * v;
    }
    const double mean = sum / static_cast<double>(values.size());
    return std::pair{mean, std::sqrt(squares / static_cast<double>(values.size()) - mean * mean)};
  };
  auto [norm_mean, norm_std] = stats("model.norm.weight");
  EXPECT_NEAR(norm_mean, 1.0, 0.03);
  EXPECT_NEAR(norm_std, 0.05, 0.02);
  EXPECT_NEAR(stats("model.embed_tokens.weight").second, 1.0, 0.05);
  EXPECT_NEAR(stats("lm_head.weight").second, 16.0 / 8.0, 0.1);
  EXPECT_NEAR(stats("model.layers.0.self_attn.q_proj.weight").second, 1.0 / 8.0, 0.01);
  EXPECT_NEAR(stats("model.layers.0.mlp.down_proj.weight").second, 1.0 / std::sqrt(96.0), 0.01);
}

TEST(SyntheticTest, WithoutWeightsWritesOnlyConfigAndTokenizer) {
  testing::TempDir full;
  testing::TempDir light;
  SyntheticModelOptions options = TinyOptions();
  ASSERT_TRUE(WriteSyntheticModel(full.path(), options).ok());
  options.write_weights = false;
  ASSERT_TRUE(WriteSyntheticModel(light.path(), options).ok());
  EXPECT_FALSE(std::filesystem::exists(light.path() / "model.safetensors"));
  for (const char* file : kFiles) {
    if (std::string(file) == "model.safetensors") continue;
    EXPECT_EQ(testing::ReadFile(light.path() / file), testing::ReadFile(full.path() / file))
        << file;
  }
  // The spec still loads; the weights are Weights::Random's business.
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(light.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(Weights::Load(light.path(), *spec).ok());
  EXPECT_TRUE(Weights::Random(*spec, options.seed).ok());
}

// Greedy decoding must not sit on near-ties: for final hidden states of RMS 1 (what the final
// RMSNorm produces), the top-1 logit beats the top-2 by more than 0.5 in most cases.
TEST(SyntheticTest, LmHeadGivesDecisiveLogits) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteSyntheticModel(dir.path(), TinyOptions()).ok());
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir.path());
  ASSERT_TRUE(spec.ok());
  auto weights = Weights::Load(dir.path(), *spec);
  ASSERT_TRUE(weights.ok());
  const std::vector<float> lm_head = ReadFloats(**(*weights)->Get("lm_head.weight"));
  const int64_t hidden = spec->hidden_size;
  std::mt19937 random(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int decisive = 0;
  constexpr int kTrials = 200;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::vector<float> h(static_cast<size_t>(hidden));
    double squares = 0;
    for (float& v : h) {
      v = normal(random);
      squares += v * v;
    }
    const float scale = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(hidden)));
    std::vector<float> logits(static_cast<size_t>(spec->vocab_size));
    for (int64_t v = 0; v < spec->vocab_size; ++v) {
      double dot = 0;
      for (int64_t i = 0; i < hidden; ++i) dot += lm_head[v * hidden + i] * h[i] * scale;
      logits[v] = static_cast<float>(dot);
    }
    std::partial_sort(logits.begin(), logits.begin() + 2, logits.end(), std::greater<>());
    if (logits[0] - logits[1] > 0.5f) ++decisive;
  }
  EXPECT_GE(decisive, kTrials * 8 / 10);
}

TEST(SyntheticTest, RejectsSmallVocabularyAndBadSpecs) {
  testing::TempDir dir;
  SyntheticModelOptions options = TinyOptions();
  options.spec.vocab_size = 100;
  absl::Status status = WriteSyntheticModel(dir.path() / "m", options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("vocab_size 100"));

  options = TinyOptions();
  options.spec.num_kv_heads = 3;
  status = WriteSyntheticModel(dir.path() / "m", options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("num_key_value_heads"));
}

TEST(SyntheticTest, UnwritableDirectoryIsAnError) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() / "file", "x");
  absl::Status status = WriteSyntheticModel(dir.path() / "file" / "model", TinyOptions());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("cannot create the model directory"));
  status = WriteSyntheticModel(dir.path() / "file", TinyOptions());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("exists and is not a directory"));
}

}  // namespace
}  // namespace muxserve::model
