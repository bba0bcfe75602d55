#include "muxserve/model/weights.h"

#include <cmath>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/model/synthetic.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::model {
namespace {

using ::testing::HasSubstr;

ModelSpec TinySpec() {
  ModelSpec spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 300;
  spec.hidden_size = 16;
  spec.intermediate_size = 24;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 4;
  spec.max_position_embeddings = 128;
  return spec;
}

TensorToWrite Zeros(const std::string& name, std::vector<int64_t> shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return {name, DType::kFloat32, std::move(shape),
          std::vector<std::byte>(static_cast<size_t>(count) * 4)};
}

std::vector<TensorToWrite> TensorsFor(const ModelSpec& spec) {
  std::vector<TensorToWrite> tensors;
  for (const ExpectedTensor& expected : ExpectedTensors(spec)) {
    tensors.push_back(Zeros(expected.name, expected.shape));
  }
  return tensors;
}

TEST(WeightsTest, ExpectedTensorsFollowHfNamesAndShapes) {
  ModelSpec spec = TinySpec();
  std::vector<ExpectedTensor> tensors = ExpectedTensors(spec);
  ASSERT_EQ(tensors.size(), 1 + 2 * 9 + 1 + 1u);
  EXPECT_EQ(tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.front().shape, (std::vector<int64_t>{300, 16}));
  EXPECT_EQ(tensors[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(tensors[2].shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(tensors[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(tensors[3].shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(tensors[5].name, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(tensors[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(tensors[9].shape, (std::vector<int64_t>{16, 24}));
  EXPECT_EQ(tensors.back().name, "lm_head.weight");

  int64_t elements = 0;
  for (const ExpectedTensor& tensor : tensors) {
    int64_t count = 1;
    for (int64_t dim : tensor.shape) count *= dim;
    elements += count;
  }
  EXPECT_EQ(elements, spec.NumParameters());

  spec.qkv_bias = true;
  spec.tie_word_embeddings = true;
  tensors = ExpectedTensors(spec);
  EXPECT_EQ(tensors.back().name, "model.norm.weight");
  EXPECT_EQ(tensors[5].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(tensors[6].shape, (std::vector<int64_t>{8}));
}

TEST(WeightsTest, LoadsSingleFile) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  std::vector<TensorToWrite> tensors = TensorsFor(spec);
  tensors.push_back(Zeros("model.layers.0.self_attn.rotary_emb.inv_freq", {2}));  // extra: ignored
  ASSERT_TRUE(WriteSafetensors(dir.path() / "model.safetensors", tensors).ok());

  absl::StatusOr<std::unique_ptr<Weights>> weights = Weights::Load(dir.path(), spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_TRUE((*weights)->Has("model.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE((*weights)->Has("model.layers.2.mlp.up_proj.weight"));
  absl::StatusOr<const TensorInfo*> embed = (*weights)->Get("model.embed_tokens.weight");
  ASSERT_TRUE(embed.ok());
  EXPECT_EQ((*embed)->shape, (std::vector<int64_t>{300, 16}));
  EXPECT_EQ((*weights)->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*weights)->TotalBytes(), spec.WeightBytes(DType::kFloat32) + 8);
  EXPECT_EQ((*weights)->tensors().size(), tensors.size());
}

TEST(WeightsTest, MissingTensorIsNamedWithItsShape) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  std::vector<TensorToWrite> tensors = TensorsFor(spec);
  std::erase_if(tensors, [](const TensorToWrite& t) {
    return t.name == "model.layers.1.mlp.up_proj.weight";
  });
  ASSERT_TRUE(WriteSafetensors(dir.path() / "model.safetensors", tensors).ok());
  auto weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape "
                        "[24, 16])"));
}

TEST(WeightsTest, MisshapedTensorNamesBothShapes) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  std::vector<TensorToWrite> tensors = TensorsFor(spec);
  for (TensorToWrite& tensor : tensors) {
    if (tensor.name == "model.layers.0.self_attn.k_proj.weight")
      tensor = Zeros(tensor.name, {16, 16});
  }
  ASSERT_TRUE(WriteSafetensors(dir.path() / "model.safetensors", tensors).ok());
  auto weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("'model.layers.0.self_attn.k_proj.weight' has shape [16, 16] but the "
                        "config implies [8, 16]"));
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("model.safetensors"));
}

TEST(WeightsTest, BiasesRequiredWithQkvBiasAndLmHeadNotWhenTied) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  ASSERT_TRUE(WriteSafetensors(dir.path() / "model.safetensors", TensorsFor(spec)).ok());
  ModelSpec with_bias = spec;
  with_bias.qkv_bias = true;
  auto weights = Weights::Load(dir.path(), with_bias);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("model.layers.0.self_attn.q_proj.bias"));

  ModelSpec tied = spec;
  tied.tie_word_embeddings = true;
  std::vector<TensorToWrite> tensors = TensorsFor(tied);
  ASSERT_TRUE(WriteSafetensors(dir.path() / "model.safetensors", tensors).ok());
  EXPECT_TRUE(Weights::Load(dir.path(), tied).ok());
  EXPECT_FALSE(Weights::Load(dir.path(), spec).ok());  // lm_head missing
}

// Writes the tensors over two shards with an index.
void WriteSharded(const std::filesystem::path& dir, const std::vector<TensorToWrite>& tensors,
                  nlohmann::json* weight_map) {
  std::vector<TensorToWrite> first;
  std::vector<TensorToWrite> second;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const bool in_first = i < tensors.size() / 2;
    (in_first ? first : second).push_back(tensors[i]);
    (*weight_map)[tensors[i].name] =
        in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  ASSERT_TRUE(WriteSafetensors(dir / "model-00001-of-00002.safetensors", first).ok());
  ASSERT_TRUE(WriteSafetensors(dir / "model-00002-of-00002.safetensors", second).ok());
}

void WriteIndex(const std::filesystem::path& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  testing::WriteFile(dir / "model.safetensors.index.json", index.dump());
}

TEST(WeightsTest, LoadsShardsThroughTheIndex) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  nlohmann::json weight_map;
  WriteSharded(dir.path(), TensorsFor(spec), &weight_map);
  WriteIndex(dir.path(), weight_map);
  auto weights = Weights::Load(dir.path(), spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_TRUE((*weights)->Has("model.embed_tokens.weight"));
  EXPECT_TRUE((*weights)->Has("lm_head.weight"));
  EXPECT_EQ((*weights)->TotalBytes(), spec.WeightBytes(DType::kFloat32));
}

TEST(WeightsTest, IndexErrors) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  nlohmann::json weight_map;
  WriteSharded(dir.path(), TensorsFor(spec), &weight_map);

  // The index points a tensor at the wrong shard.
  nlohmann::json wrong = weight_map;
  wrong["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
  WriteIndex(dir.path(), wrong);
  auto weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("'model.embed_tokens.weight' is listed in shard"));

  // A shard that does not exist.
  wrong = weight_map;
  wrong["lm_head.weight"] = "model-00003-of-00003.safetensors";
  WriteIndex(dir.path(), wrong);
  weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("model-00003-of-00003.safetensors"));

  // A shard outside the directory.
  wrong = weight_map;
  wrong["lm_head.weight"] = "../elsewhere.safetensors";
  WriteIndex(dir.path(), wrong);
  weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()),
              HasSubstr("not a file inside the model directory"));

  // No weight_map.
  testing::WriteFile(dir.path() / "model.safetensors.index.json", R"({"metadata": {}})");
  weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("'weight_map'"));

  // Malformed JSON names the index file.
  testing::WriteFile(dir.path() / "model.safetensors.index.json", "{");
  weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("model.safetensors.index.json"));
}

TEST(WeightsTest, TensorInTwoShardsIsAnError) {
  testing::TempDir dir;
  ModelSpec spec = TinySpec();
  std::vector<TensorToWrite> tensors = TensorsFor(spec);
  ASSERT_TRUE(WriteSafetensors(dir.path() / "a.safetensors", tensors).ok());
  ASSERT_TRUE(WriteSafetensors(dir.path() / "b.safetensors", {tensors[0]}).ok());
  nlohmann::json weight_map;
  for (const TensorToWrite& tensor : tensors) weight_map[tensor.name] = "a.safetensors";
  weight_map[tensors[0].name] = "b.safetensors";
  WriteIndex(dir.path(), weight_map);
  auto weights = Weights::Load(dir.path(), spec);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("is in both"));
}

TEST(WeightsTest, NoWeightFilesIsNotFound) {
  testing::TempDir dir;
  auto weights = Weights::Load(dir.path(), TinySpec());
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("model.safetensors"));
}

TEST(WeightsTest, RandomHasEveryExpectedTensorWithoutData) {
  ModelSpec spec = TinySpec();
  spec.qkv_bias = true;
  auto weights = Weights::Random(spec, 9);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const std::vector<ExpectedTensor> expected = ExpectedTensors(spec);
  EXPECT_EQ((*weights)->tensors().size(), expected.size());
  for (const ExpectedTensor& tensor : expected) {
    SCOPED_TRACE(tensor.name);
    auto info = (*weights)->Get(tensor.name);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ((*info)->dtype, DType::kBFloat16);
    EXPECT_EQ((*info)->shape, tensor.shape);
    EXPECT_TRUE((*info)->data.empty());
    ASSERT_TRUE((*info)->random.has_value());
    const WeightInit init = SyntheticWeightInit(tensor.name, spec);
    EXPECT_FLOAT_EQ((*info)->random->mean, static_cast<float>(init.mean));
    EXPECT_FLOAT_EQ((*info)->random->std, static_cast<float>(init.std));
    EXPECT_EQ((*info)->random->seed, SyntheticTensorSeed(9, tensor.name));
  }
  EXPECT_EQ((*weights)->TotalBytes(), spec.WeightBytes(DType::kBFloat16));
}

TEST(WeightsTest, RandomInitsAreDeterministicAndDifferPerTensorAndSeed) {
  const ModelSpec spec = TinySpec();
  auto first = Weights::Random(spec, 9);
  auto again = Weights::Random(spec, 9);
  auto other = Weights::Random(spec, 10);
  ASSERT_TRUE(first.ok() && again.ok() && other.ok());
  std::set<uint64_t> seeds;
  for (const auto& [name, info] : (*first)->tensors()) {
    const TensorInfo& same = **(*again)->Get(name);
    EXPECT_EQ(info->random->seed, same.random->seed) << name;
    EXPECT_EQ(info->random->mean, same.random->mean) << name;
    EXPECT_EQ(info->random->std, same.random->std) << name;
    EXPECT_NE(info->random->seed, (*(*other)->Get(name))->random->seed) << name;
    seeds.insert(info->random->seed);
  }
  EXPECT_EQ(seeds.size(), (*first)->tensors().size());  // every tensor has its own values

  // The synthetic writer's scales.
  EXPECT_FLOAT_EQ((*(*first)->Get("model.norm.weight"))->random->mean, 1.0f);
  EXPECT_FLOAT_EQ((*(*first)->Get("model.norm.weight"))->random->std, 0.05f);
  EXPECT_FLOAT_EQ((*(*first)->Get("lm_head.weight"))->random->std, 16.0f / 4.0f);
  EXPECT_FLOAT_EQ((*(*first)->Get("model.layers.1.mlp.down_proj.weight"))->random->std,
                  static_cast<float>(1.0 / std::sqrt(24.0)));
}

TEST(WeightsTest, RandomRejectsEmptyShapes) {
  ModelSpec spec = TinySpec();
  spec.intermediate_size = 0;
  auto weights = Weights::Random(spec, 1);
  ASSERT_FALSE(weights.ok());
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("mlp.gate_proj.weight"));
}

}  // namespace
}  // namespace muxserve::model
