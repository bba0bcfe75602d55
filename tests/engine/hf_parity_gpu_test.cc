// The CUDA backend (bf16) against HF transformers (fp32, eager) on the three synthetic models of
// hf_fixtures.h, to the CUDA issue's bar for bf16: logits within 2e-2 relative and the same
// greedy tokens for 32 steps, through the Transformer alone and through a UnitEngine. The fp32
// weights are rounded to bf16 at load, so this also covers that rounding. Skipped without a
// CUDA device.
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/device.h"
#include "hf_fixtures.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

using hf::Argmax;
using hf::Fixture;
using hf::kNewTokens;
using hf::LoadFixture;
using hf::RelativeError;

constexpr double kMaxRelativeError = 2e-2;
constexpr int kGreedySteps = 32;

class HfParityGpuTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const auto devices = runtime::ListCudaDevices();
    if (!devices.ok() || devices->empty()) GTEST_SKIP() << "no CUDA device";
  }
};

// HF's greedy tokens fed one decode step at a time after the prompt: at each of the first 32
// steps our best token is the one HF chose (so our own greedy run is HF's), and the logits of
// the prompt and of the last step are within 2e-2 of HF's.
TEST_P(HfParityGpuTest, LogitsAndGreedyTokensMatchTransformers) {
  Fixture fixture = LoadFixture(GetParam());
  const model::ModelSpec& spec = fixture.spec;
  auto weights = model::Weights::Load(fixture.dir, spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto ops = MakeCudaOps({});
  ASSERT_TRUE(ops.ok()) << ops.status();
  constexpr int64_t kMaxStepTokens = 32;
  auto transformer = Transformer::Load(spec, **weights, ops->get(), kMaxStepTokens, 1);
  ASSERT_TRUE(transformer.ok()) << transformer.status();

  constexpr int64_t kTokensPerBlock = 16;
  const int64_t block_bytes = 2 * kTokensPerBlock * spec.head_dim * 2;  // K and V, bf16
  constexpr int64_t kBlocks = 1024;
  kvcache::HeadBlockPool pool(kBlocks, block_bytes, DType::kBFloat16);
  auto memory = (*ops)->Allocate(kBlocks * block_bytes);
  ASSERT_TRUE(memory.ok()) << memory.status();
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
    const auto greedy = test["greedy"].get<std::vector<int32_t>>();
    ASSERT_LE(static_cast<int64_t>(prompt.size()), kMaxStepTokens);
    ASSERT_EQ(greedy.size(), static_cast<size_t>(kNewTokens));
    const int64_t total = static_cast<int64_t>(prompt.size()) + kNewTokens;
    kvcache::BlockTable table(shape);
    const int64_t token_blocks = (total + kTokensPerBlock - 1) / kTokensPerBlock;
    ASSERT_TRUE(
        pool.Allocate(llm, token_blocks * shape.blocks_per_token_block(), table.mutable_ids())
            .ok());

    // The prompt as one prefill step, then greedy[0..62] one decode step each: 64 logits, the
    // i-th of which chose greedy[i] in HF's run.
    std::vector<int32_t> step_tokens = prompt;
    int32_t done = 0;
    int agreeing = 0;
    std::vector<float> logits;
    for (int step = 0; step < kNewTokens; ++step) {
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
      ASSERT_TRUE((*transformer)->Forward(plan, kv, &logits).ok());
      done += count;
      const bool same = Argmax(logits) == greedy[step];
      agreeing += same ? 1 : 0;
      if (step < kGreedySteps) {
        EXPECT_TRUE(same) << GetParam() << " prompt of " << prompt.size() << ": step " << step
                          << " chose " << Argmax(logits) << ", HF " << greedy[step];
      }
      if (step == 0) {
        EXPECT_LT(RelativeError(logits, test["prompt_logits"].get<std::vector<float>>(),
                                &largest_error),
                  kMaxRelativeError)
            << GetParam() << " prompt of " << prompt.size();
      }
      step_tokens = {greedy[step]};
    }
    EXPECT_LT(RelativeError(logits, test["last_logits"].get<std::vector<float>>(), &largest_error),
              kMaxRelativeError)
        << GetParam() << " after " << kNewTokens - 1 << " greedy tokens";
    std::printf("%s prompt of %zu: %d of %d greedy steps agree with HF\n", GetParam().c_str(),
                prompt.size(), agreeing, kNewTokens);
    pool.Free(llm, table.ids());
  }
  std::printf("%s: largest relative logit error %.3g (bf16 against HF fp32)\n",
              GetParam().c_str(), largest_error);
  std::filesystem::remove_all(fixture.dir);
}

// The serving path on the GPU: every prompt at once, batched by the scheduler, 32 greedy tokens.
TEST_P(HfParityGpuTest, UnitEngineGreedyMatchesTransformers) {
  Fixture fixture = LoadFixture(GetParam());
  UnitOptions options;
  options.backend = config::Backend::kCuda;
  options.kv_cache = {.memory_bytes = 64 << 20, .block_bytes = 16384};
  auto engine = UnitEngine::Create(options, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto tokenizer = model::Tokenizer::Load(fixture.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_TRUE((*engine)
                  ->AddLlm({.name = GetParam(),
                            .model_dir = fixture.dir,
                            .spec = fixture.spec,
                            .tokenizer = std::move(*tokenizer),
                            .dtype = DType::kBFloat16,
                            .max_context = 256})
                  .ok());
  std::vector<std::shared_ptr<testing::Collector>> sinks;
  for (const nlohmann::json& test : fixture.json["cases"]) {
    auto sink = std::make_shared<testing::Collector>();
    Request request;
    request.model = GetParam();
    request.prompt_tokens = test["prompt"].get<std::vector<int32_t>>();
    request.sampling = {.max_tokens = kGreedySteps, .temperature = 0, .ignore_eos = true};
    request.sink = sink;
    ASSERT_TRUE((*engine)->Submit(std::move(request)).ok());
    sinks.push_back(sink);
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    std::vector<int32_t> want = fixture.json["cases"][i]["greedy"].get<std::vector<int32_t>>();
    want.resize(kGreedySteps);
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->ids(), want) << GetParam() << " case " << i;
  }
  engine->reset();
  std::filesystem::remove_all(fixture.dir);
}

INSTANTIATE_TEST_SUITE_P(Models, HfParityGpuTest,
                         ::testing::Values("llama2_mha", "llama3_gqa", "qwen2_bias_tied"));

}  // namespace
}  // namespace muxserve::engine
