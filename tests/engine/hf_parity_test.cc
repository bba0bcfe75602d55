// The CPU backend against HF transformers (fp32, eager) on three synthetic models (hf_fixtures.h).
// The weights are written again here from the seed.
#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/engine/unit_engine.h"
#include "nlohmann/json.hpp"
#include "hf_fixtures.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

using hf::Argmax;
using hf::Fixture;
using hf::kNewTokens;
using hf::LoadFixture;
using hf::RelativeError;
using hf::TopK;

constexpr double kMaxRelativeError = 1e-4;

class HfParityTest : public ::testing::TestWithParam<std::string> {};

// The Transformer alone: the prompt as one prefill step, then one decode step per token.
TEST_P(HfParityTest, LogitsAndGreedyTokensMatchTransformers) {
  Fixture fixture = LoadFixture(GetParam());
  auto ops = MakeCpuOps(2);
  hf::CaseRunner runner;
  ASSERT_TRUE(runner.Load(fixture, GetParam(), ops.get(), DType::kFloat32, 8).ok());

  double largest_error = 0;
  for (const nlohmann::json& test : fixture.json["cases"]) {
    const auto prompt = test["prompt"].get<std::vector<int32_t>>();
    const auto want_tokens = test["greedy"].get<std::vector<int32_t>>();

    // Greedy: 64 tokens, each chosen from the logits before it.
    std::vector<int32_t> generated;
    absl::StatusOr<std::vector<std::vector<float>>> greedy =
        runner.Run(prompt, kNewTokens - 1, [&](int, std::span<const float> step_logits) {
          generated.push_back(Argmax(step_logits));
          return generated.back();
        });
    ASSERT_TRUE(greedy.ok()) << greedy.status();
    std::vector<std::vector<float>> logits = *std::move(greedy);
    generated.push_back(Argmax(logits.back()));
    EXPECT_LT(RelativeError(logits.front(), test["prompt_logits"].get<std::vector<float>>(),
                            &largest_error),
              kMaxRelativeError)
        << GetParam() << " prompt of " << prompt.size();
    EXPECT_LT(
        RelativeError(logits.back(), test["last_logits"].get<std::vector<float>>(), &largest_error),
        kMaxRelativeError)
        << GetParam() << " after " << kNewTokens << " greedy tokens";
    EXPECT_EQ(generated, want_tokens) << GetParam() << " prompt of " << prompt.size();

    // Teacher forcing: HF's fixed tokens fed one decode step at a time.
    const auto forced = test["forced"].get<std::vector<int32_t>>();
    const auto want_top = test["forced_top"].get<std::vector<std::vector<int32_t>>>();
    absl::StatusOr<std::vector<std::vector<float>>> fed =
        runner.Run(prompt, static_cast<int>(forced.size()),
                   [&](int step, std::span<const float>) { return forced[step]; });
    ASSERT_TRUE(fed.ok()) << fed.status();
    logits = *std::move(fed);
    ASSERT_EQ(logits.size(), want_top.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_EQ(TopK(logits[i], want_top[i].size()), want_top[i])
          << GetParam() << " prompt of " << prompt.size() << ", after " << i << " fed tokens";
    }
    EXPECT_LT(RelativeError(logits.back(), test["forced_last_logits"].get<std::vector<float>>(),
                            &largest_error),
              kMaxRelativeError)
        << GetParam() << " after " << forced.size() << " fed tokens";
  }
  std::cout << GetParam() << ": largest relative logit error " << largest_error << "\n";
  std::filesystem::remove_all(fixture.dir);
}

// The serving path: every prompt submitted at once to a UnitEngine, batched by its scheduler.
TEST_P(HfParityTest, UnitEngineGreedyMatchesTransformers) {
  UnitOptions options;
  options.cpu_threads = 2;
  options.kv_cache = {.memory_bytes = 16 << 20, .block_bytes = 4096};
  hf::ExpectUnitEngineGreedy(GetParam(), options, DType::kFloat32, kNewTokens);
}

INSTANTIATE_TEST_SUITE_P(Models, HfParityTest, ::testing::ValuesIn(hf::kFixtureModels));

}  // namespace
}  // namespace muxserve::engine
