// An LLM whose weights are drawn at load time (LlmSetup::random_weights_seed) served end to end on
// the CPU backend: no model.safetensors exists, and the same seed gives the same tokens.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/synthetic.h"
#include "muxserve/model/tokenizer.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

using testing::Collector;

class RandomWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = testing::TinySpec(2, 64, 4, 2, 128);
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("muxserve_random_weights_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    // Config and tokenizer only, as the daemon writes them for `weights: device`.
    const absl::Status written = model::WriteSyntheticModel(
        dir_, {.spec = spec_, .seed = 0, .weight_dtype = DType::kBFloat16, .write_weights = false});
    ASSERT_TRUE(written.ok()) << written;
    ASSERT_FALSE(std::filesystem::exists(dir_ / "model.safetensors"));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<UnitEngine> MakeEngine(uint64_t seed) {
    UnitOptions options;
    options.cpu_threads = 2;
    options.kv_cache = {.memory_bytes = 8 << 20, .block_bytes = 2048};
    auto engine = UnitEngine::Create(options, nullptr);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return nullptr;
    auto tokenizer = model::Tokenizer::Load(dir_);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    if (!tokenizer.ok()) return nullptr;
    const absl::Status added = (*engine)->AddLlm({.name = "random",
                                                  .model_dir = dir_,
                                                  .spec = spec_,
                                                  .tokenizer = std::move(*tokenizer),
                                                  .max_context = 256,
                                                  .random_weights_seed = seed});
    EXPECT_TRUE(added.ok()) << added;
    if (!added.ok()) return nullptr;
    return std::move(*engine);
  }

  // The greedy completion of a fixed prompt.
  static std::vector<int32_t> Complete(UnitEngine& engine) {
    auto sink = std::make_shared<Collector>();
    Request request;
    request.model = "random";
    request.prompt_tokens = {3, 41, 79, 117, 155, 193, 231};
    request.sampling = {.max_tokens = 16, .temperature = 0, .ignore_eos = true};
    request.sink = sink;
    EXPECT_TRUE(engine.Submit(std::move(request)).ok());
    const FinishInfo info = sink->Wait();
    EXPECT_EQ(info.reason, FinishReason::kLength);
    EXPECT_EQ(info.completion_tokens, 16);
    return sink->ids();
  }

  model::ModelSpec spec_;
  std::filesystem::path dir_;
};

TEST_F(RandomWeightsTest, ServesAGreedyRequestWithoutSafetensors) {
  std::unique_ptr<UnitEngine> engine = MakeEngine(7);
  ASSERT_NE(engine, nullptr);
  const std::vector<int32_t> ids = Complete(*engine);
  ASSERT_EQ(ids.size(), 16u);
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, spec_.vocab_size);
  }
}

TEST_F(RandomWeightsTest, SameSeedSameTokensOtherSeedOtherTokens) {
  std::unique_ptr<UnitEngine> first = MakeEngine(7);
  std::unique_ptr<UnitEngine> second = MakeEngine(7);
  std::unique_ptr<UnitEngine> other = MakeEngine(8);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_NE(other, nullptr);
  const std::vector<int32_t> tokens = Complete(*first);
  EXPECT_EQ(Complete(*second), tokens);
  EXPECT_NE(Complete(*other), tokens);
}

}  // namespace
}  // namespace muxserve::engine
