// The CPU backend against HF transformers (fp32, eager) on three synthetic models (hf_fixtures.h).
// The weights are written again here from the seed.
#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/synthetic.h"
#include "muxserve/model/tokenizer.h"
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
  const model::ModelSpec& spec = fixture.spec;
  auto weights = model::Weights::Load(fixture.dir, spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto ops = MakeCpuOps(2);
  constexpr int64_t kMaxStepTokens = 32;
  auto transformer = Transformer::Load(spec, **weights, ops.get(), kMaxStepTokens, 1);
  ASSERT_TRUE(transformer.ok()) << transformer.status();

  constexpr int64_t kTokensPerBlock = 8;
  const int64_t block_bytes = 2 * kTokensPerBlock * spec.head_dim * 4;
  constexpr int64_t kBlocks = 512;
  kvcache::HeadBlockPool pool(kBlocks, block_bytes, DType::kFloat32);
  auto memory = ops->Allocate(kBlocks * block_bytes);
  ASSERT_TRUE(memory.ok());
  const kvcache::KvShape shape{spec.num_layers, spec.num_kv_heads, spec.head_dim};
  const int llm = pool.RegisterLlm(GetParam(), shape, 1);
  const kernels::PagedKv kv{.pool = memory->get(),
                            .block_bytes = block_bytes,
                            .tokens_per_block = kTokensPerBlock,
                            .head_dim = spec.head_dim,
                            .num_layers = spec.num_layers,
                            .num_kv_heads = spec.num_kv_heads};

  double largest_error = 0;
  for (const nlohmann::json& test : fixture.json["cases"]) {
    const auto prompt = test["prompt"].get<std::vector<int32_t>>();
    const auto want_tokens = test["greedy"].get<std::vector<int32_t>>();
    ASSERT_LE(static_cast<int64_t>(prompt.size()), kMaxStepTokens);
    const int64_t total = static_cast<int64_t>(prompt.size()) + kNewTokens;
    kvcache::BlockTable table(shape);
    const int64_t token_blocks = (total + kTokensPerBlock - 1) / kTokensPerBlock;
    ASSERT_TRUE(
        pool.Allocate(llm, token_blocks * shape.blocks_per_token_block(), table.mutable_ids())
            .ok());

    // Runs the prompt as one prefill step, then `steps` decode steps, each feeding `next` of
    // the logits just computed; returns the logits of every step.
    auto run = [&](int steps, const std::function<int32_t(int, std::span<const float>)>& next) {
      std::vector<std::vector<float>> all_logits;
      std::vector<int32_t> step_tokens = prompt;
      int32_t done = 0;
      for (int step = 0; step <= steps; ++step) {
        StepPlan plan;
        const auto count = static_cast<int32_t>(step_tokens.size());
        for (int32_t i = 0; i < count; ++i) {
          plan.tokens.push_back(step_tokens[i]);
          plan.positions.push_back(done + i);
        }
        plan.seqs.push_back(
            {.q_start = 0, .q_len = count, .context_len = done + count, .table_offset = 0});
        plan.block_tables = table.ids();
        plan.logit_rows.push_back(count - 1);
        std::vector<float> logits;
        EXPECT_TRUE((*transformer)->Forward(plan, kv, &logits).ok());
        done += count;
        all_logits.push_back(std::move(logits));
        if (step < steps) step_tokens = {next(step, all_logits.back())};
      }
      return all_logits;
    };

    // Greedy: 64 tokens, each chosen from the logits before it.
    std::vector<int32_t> generated;
    std::vector<std::vector<float>> logits =
        run(kNewTokens - 1, [&](int, std::span<const float> step_logits) {
          generated.push_back(Argmax(step_logits));
          return generated.back();
        });
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
    logits = run(static_cast<int>(forced.size()),
                 [&](int step, std::span<const float>) { return forced[step]; });
    ASSERT_EQ(logits.size(), want_top.size());
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_EQ(TopK(logits[i], want_top[i].size()), want_top[i])
          << GetParam() << " prompt of " << prompt.size() << ", after " << i << " fed tokens";
    }
    EXPECT_LT(RelativeError(logits.back(), test["forced_last_logits"].get<std::vector<float>>(),
                            &largest_error),
              kMaxRelativeError)
        << GetParam() << " after " << forced.size() << " fed tokens";
    pool.Free(llm, table.ids());
  }
  std::cout << GetParam() << ": largest relative logit error " << largest_error << "\n";
  std::filesystem::remove_all(fixture.dir);
}

// The serving path: every prompt submitted at once to a UnitEngine, batched by its scheduler.
TEST_P(HfParityTest, UnitEngineGreedyMatchesTransformers) {
  Fixture fixture = LoadFixture(GetParam());
  UnitOptions options;
  options.cpu_threads = 2;
  options.kv_cache = {.memory_bytes = 16 << 20, .block_bytes = 4096};
  auto engine = UnitEngine::Create(options, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto tokenizer = model::Tokenizer::Load(fixture.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_TRUE((*engine)
                  ->AddLlm({.name = GetParam(),
                            .model_dir = fixture.dir,
                            .spec = fixture.spec,
                            .tokenizer = std::move(*tokenizer),
                            .max_context = 256})
                  .ok());
  std::vector<std::shared_ptr<testing::Collector>> sinks;
  for (const nlohmann::json& test : fixture.json["cases"]) {
    auto sink = std::make_shared<testing::Collector>();
    Request request;
    request.model = GetParam();
    request.prompt_tokens = test["prompt"].get<std::vector<int32_t>>();
    request.sampling = {.max_tokens = kNewTokens, .temperature = 0, .ignore_eos = true};
    request.sink = sink;
    ASSERT_TRUE((*engine)->Submit(std::move(request)).ok());
    sinks.push_back(sink);
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->ids(), fixture.json["cases"][i]["greedy"].get<std::vector<int32_t>>())
        << GetParam() << " case " << i;
  }
  engine->reset();
  std::filesystem::remove_all(fixture.dir);
}

INSTANTIATE_TEST_SUITE_P(Models, HfParityTest,
                         ::testing::Values("llama2_mha", "llama3_gqa", "qwen2_bias_tied"));

}  // namespace
}  // namespace muxserve::engine
