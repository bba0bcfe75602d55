#include <map>
#include <random>

#include "gtest/gtest.h"
#include "muxserve/engine/sampler.h"
#include "muxserve/engine/stop_matcher.h"

namespace muxserve::engine {
namespace {

TEST(SamplerTest, GreedyAndTopKOnePickTheArgmax) {
  Sampler sampler;
  std::mt19937_64 rng(1);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_EQ(sampler.Sample(logits, {.temperature = 0}, rng), 1);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(sampler.Sample(logits, {.temperature = 5.0f, .top_k = 1}, rng), 1);
    EXPECT_EQ(sampler.Sample(logits, {.temperature = 1.0f, .top_p = 0.01f}, rng), 1);
  }
}

TEST(SamplerTest, SameSeedSameTokens) {
  Sampler sampler;
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = static_cast<float>(i % 7) * 0.3f;
  auto draw = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 30; ++i) out.push_back(sampler.Sample(logits, {.temperature = 1.0f}, rng));
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(SamplerTest, FrequenciesFollowSoftmaxWithinTopKAndTopP) {
  Sampler sampler;
  std::mt19937_64 rng(7);
  // Probabilities at temperature 1: e^0 : e^-ln2 : e^-ln4 ... = 1/2, 1/4, 1/8, ... (scaled).
  const std::vector<float> logits = {0.0f, -0.6931472f, -1.3862944f, -2.0794415f, -20.0f};
  std::map<int32_t, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits, {.temperature = 1.0f}, rng)];
  const double total = 1 + 0.5 + 0.25 + 0.125;
  EXPECT_NEAR(counts[0] / double(draws), 1 / total, 0.02);
  EXPECT_NEAR(counts[1] / double(draws), 0.5 / total, 0.02);
  EXPECT_NEAR(counts[3] / double(draws), 0.125 / total, 0.01);

  counts.clear();
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits, {.temperature = 1.0f, .top_k = 2}, rng)];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_NEAR(counts[0] / double(draws), 2.0 / 3.0, 0.02);

  // top_p 0.7: {0} has 0.533, {0,1} reaches 0.8, so only tokens 0 and 1 remain.
  counts.clear();
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits, {.temperature = 1.0f, .top_p = 0.7f}, rng)];
  EXPECT_EQ(counts.size(), 2u);
}

TEST(StopMatcherTest, HoldsBackPossibleStartsAndCutsAtTheMatch) {
  StopMatcher matcher({"STOP", "\n\n"});
  bool stopped = false;
  EXPECT_EQ(matcher.Push("hello S", &stopped), "hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(matcher.Push("T", &stopped), "");
  EXPECT_EQ(matcher.Push("x", &stopped), "STx");  // not a stop after all
  EXPECT_EQ(matcher.Push("ok ST", &stopped), "ok ");
  EXPECT_EQ(matcher.Push("OP and more", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcherTest, EarliestMatchWinsAndFlushReturnsTheRest) {
  StopMatcher matcher({"world", "lo"});
  bool stopped = false;
  EXPECT_EQ(matcher.Push("hello world", &stopped), "hel");
  EXPECT_TRUE(stopped);
  StopMatcher pending({"abc"});
  EXPECT_EQ(pending.Push("xxab", &stopped), "xx");
  EXPECT_EQ(pending.Flush(), "ab");
  StopMatcher none({});
  EXPECT_EQ(none.Push("anything", &stopped), "anything");
}

}  // namespace
}  // namespace muxserve::engine
