#include "muxserve/engine/unit_engine.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "muxserve/model/tokenizer.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

using testing::Collector;

struct TestLlm {
  std::string name;
  model::ModelSpec spec;
  std::filesystem::path dir;
};

class UnitEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    llms_ = new std::vector<TestLlm>();
    for (auto [name, spec] : {std::pair{"alpha", testing::TinySpec(2, 64, 4, 2, 128)},
                              std::pair{"beta", testing::TinySpec(2, 96, 6, 6, 160)}}) {
      llms_->push_back({name, spec, testing::WriteTinyModel(name, spec, 11)});
    }
  }
  static void TearDownTestSuite() {
    for (const TestLlm& llm : *llms_) std::filesystem::remove_all(llm.dir);
    delete llms_;
  }

  std::unique_ptr<UnitEngine> MakeEngine(int64_t kv_bytes = 8 << 20,
                                         int64_t max_queued = 64, int tensor_parallel = 1) {
    UnitOptions options;
    options.cpu_threads = 2;
    options.tensor_parallel = tensor_parallel;
    options.kv_cache = {.memory_bytes = kv_bytes, .block_bytes = 2048};
    options.max_queued_requests = max_queued;
    auto engine = UnitEngine::Create(options, nullptr);
    EXPECT_TRUE(engine.ok()) << engine.status();
    for (const TestLlm& llm : *llms_) {
      auto tokenizer = model::Tokenizer::Load(llm.dir);
      EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
      const absl::Status added = (*engine)->AddLlm({.name = llm.name, .model_dir = llm.dir,
                                                    .spec = llm.spec,
                                                    .tokenizer = std::move(*tokenizer),
                                                    .max_context = 256});
      EXPECT_TRUE(added.ok()) << added;
    }
    return std::move(*engine);
  }

  static Request Greedy(const std::string& model, std::vector<int32_t> prompt, int max_tokens,
                        std::shared_ptr<Collector> sink) {
    Request r;
    r.model = model;
    r.prompt_tokens = std::move(prompt);
    r.sampling = {.max_tokens = max_tokens, .temperature = 0, .ignore_eos = true};
    r.sink = std::move(sink);
    return r;
  }

  static std::vector<int32_t> Prompt(int n, int salt) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 11) % 250 + 3);
    return p;
  }

  static std::vector<TestLlm>* llms_;
};
std::vector<TestLlm>* UnitEngineTest::llms_ = nullptr;

TEST_F(UnitEngineTest, GreedyOutputDoesNotDependOnWhatElseIsRunning) {
  auto engine = MakeEngine();
  // Alone.
  auto alone = std::make_shared<Collector>();
  ASSERT_TRUE(engine->Submit(Greedy("alpha", Prompt(9, 1), 12, alone)).ok());
  FinishInfo info = alone->Wait();
  EXPECT_EQ(info.reason, FinishReason::kLength);
  EXPECT_EQ(info.prompt_tokens, 9);
  EXPECT_EQ(info.completion_tokens, 12);
  ASSERT_EQ(alone->ids().size(), 12u);

  // The same request among others of both models, submitted from several threads.
  std::vector<std::shared_ptr<Collector>> sinks;
  std::vector<std::thread> threads;
  absl::Mutex mu;
  for (int t = 0; t < 6; ++t) {
    auto sink = std::make_shared<Collector>();
    sinks.push_back(sink);
    threads.emplace_back([&, t, sink] {
      const std::string model = t % 2 == 0 ? "alpha" : "beta";
      const auto prompt = t == 0 ? Prompt(9, 1) : Prompt(5 + t * 3, t);
      EXPECT_TRUE(engine->Submit(Greedy(model, prompt, 12, sink)).ok());
    });
  }
  for (auto& thread : threads) thread.join();
  for (auto& sink : sinks) EXPECT_EQ(sink->Wait().reason, FinishReason::kLength);
  EXPECT_EQ(sinks[0]->ids(), alone->ids());
  const std::vector<LlmStats> stats = engine->Stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].requests_finished + stats[1].requests_finished, 7);
  EXPECT_EQ(stats[0].running + stats[1].running, 0);
  EXPECT_EQ(stats[0].kv_blocks_used + stats[1].kv_blocks_used, 0);
}

// Both LLMs split over two CPU ranks: the same greedy tokens as unsplit, with requests of both
// batched together, and a tiny pool that forces preemption.
TEST_F(UnitEngineTest, TensorParallelUnitGivesTheSameGreedyTokens) {
  std::vector<std::vector<int32_t>> want;
  for (int tp : {1, 2}) {
    auto engine = MakeEngine(tp == 1 ? 8 << 20 : 64 << 10, 64, tp);
    std::vector<std::shared_ptr<Collector>> sinks;
    for (int i = 0; i < 6; ++i) {
      sinks.push_back(std::make_shared<Collector>());
      ASSERT_TRUE(engine
                      ->Submit(Greedy(i % 2 == 0 ? "alpha" : "beta", Prompt(5 + 3 * i, i), 10,
                                      sinks.back()))
                      .ok());
    }
    for (size_t i = 0; i < sinks.size(); ++i) {
      const FinishInfo info = sinks[i]->Wait();
      EXPECT_EQ(info.reason, FinishReason::kLength) << info.error;
      if (tp == 1) {
        want.push_back(sinks[i]->ids());
      } else {
        EXPECT_EQ(sinks[i]->ids(), want[i]) << "request " << i;
      }
    }
  }
}

TEST_F(UnitEngineTest, TensorParallelRefusesWhatItCannotSplit) {
  UnitOptions options;
  options.cpu_threads = 1;
  options.kv_cache = {.memory_bytes = 1 << 20, .block_bytes = 2048};
  options.tensor_parallel = 3;
  auto bad = UnitEngine::Create(options, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tensor_parallel 3"), std::string::npos);
  options.tensor_parallel = 4;
  auto engine = UnitEngine::Create(options, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const TestLlm& beta = (*llms_)[1];  // 6 heads: not divisible by 4
  auto tokenizer = model::Tokenizer::Load(beta.dir);
  ASSERT_TRUE(tokenizer.ok());
  const absl::Status added = (*engine)->AddLlm(
      {.name = beta.name, .model_dir = beta.dir, .spec = beta.spec,
       .tokenizer = std::move(*tokenizer), .max_context = 256});
  EXPECT_EQ(added.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(added.message().find("num_attention_heads"), std::string::npos) << added;
}

TEST_F(UnitEngineTest, PreemptionOnATinyPoolLosesNothingAndKeepsOutputs) {
  auto roomy = MakeEngine();
  // 2048-byte blocks of fp32 head_dim 16: 16 tokens per block; alpha needs 4 head blocks per
  // token block. A 208-token sequence takes 52 of the 64 blocks, so any two that overlap (each
  // runs for 200 steps) must preempt.
  auto tight = MakeEngine(64 * 2048);
  std::vector<std::shared_ptr<Collector>> reference, squeezed;
  for (int i = 0; i < 6; ++i) {
    reference.push_back(std::make_shared<Collector>());
    squeezed.push_back(std::make_shared<Collector>());
    ASSERT_TRUE(roomy->Submit(Greedy("alpha", Prompt(8, i), 200, reference.back())).ok());
    ASSERT_TRUE(tight->Submit(Greedy("alpha", Prompt(8, i), 200, squeezed.back())).ok());
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(reference[i]->Wait().reason, FinishReason::kLength);
    EXPECT_EQ(squeezed[i]->Wait().reason, FinishReason::kLength);
    EXPECT_EQ(squeezed[i]->ids(), reference[i]->ids()) << "request " << i;
  }
  EXPECT_GT(tight->Stats()[0].preemptions, 0);
}

TEST_F(UnitEngineTest, StopTokenStopStringAndLength) {
  auto engine = MakeEngine();
  auto probe = std::make_shared<Collector>();
  ASSERT_TRUE(engine->Submit(Greedy("beta", Prompt(6, 3), 8, probe)).ok());
  probe->Wait();
  const std::vector<int32_t> ids = probe->ids();
  ASSERT_EQ(ids.size(), 8u);

  // Stop at the third generated token.
  auto by_token = std::make_shared<Collector>();
  Request r = Greedy("beta", Prompt(6, 3), 8, by_token);
  r.sampling.stop_token_ids = {ids[2]};
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  FinishInfo info = by_token->Wait();
  EXPECT_EQ(info.reason, FinishReason::kStop);
  const auto first = std::find(ids.begin(), ids.end(), ids[2]) - ids.begin() + 1;
  EXPECT_EQ(info.completion_tokens, first);

  // A stop string taken from the full output: the text ends right before it.
  const std::string full = probe->text();
  ASSERT_GE(full.size(), 4u);
  const std::string stop = full.substr(full.size() / 2, 2);
  auto by_string = std::make_shared<Collector>();
  r = Greedy("beta", Prompt(6, 3), 8, by_string);
  r.sampling.stop = {stop};
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  EXPECT_EQ(by_string->Wait().reason, FinishReason::kStop);
  EXPECT_EQ(by_string->text(), full.substr(0, full.find(stop)));
}

TEST_F(UnitEngineTest, CancelDeadlineAndValidation) {
  auto engine = MakeEngine();
  auto cancelled = std::make_shared<Collector>();
  Request r = Greedy("alpha", Prompt(10, 2), 200, cancelled);
  auto flag = r.cancel;
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  flag->Cancel();
  EXPECT_EQ(cancelled->Wait().reason, FinishReason::kAbort);

  auto late = std::make_shared<Collector>();
  r = Greedy("alpha", Prompt(10, 2), 200, late);
  r.deadline = Clock::Real()->Now() + std::chrono::milliseconds(1);
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  FinishInfo info = late->Wait();
  EXPECT_EQ(info.reason, FinishReason::kError);
  EXPECT_EQ(info.error.code(), absl::StatusCode::kDeadlineExceeded);

  auto sink = std::make_shared<Collector>();
  EXPECT_EQ(engine->Submit(Greedy("gamma", Prompt(3, 1), 4, sink)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine->Submit(Greedy("alpha", {}, 4, sink)).code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status too_long = engine->Submit(Greedy("alpha", Prompt(250, 1), 10, sink));
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.message().find("max_tokens"), std::string::npos) << too_long;
  Request bad = Greedy("alpha", Prompt(3, 1), 4, sink);
  bad.sampling.top_p = 0;
  EXPECT_NE(engine->Submit(bad).message().find("top_p"), std::string::npos);
  bad = Greedy("alpha", Prompt(3, 1), 4, sink);
  bad.sampling.temperature = -1;
  EXPECT_NE(engine->Submit(bad).message().find("temperature"), std::string::npos);
  bad = Greedy("alpha", {1, 999}, 4, sink);
  EXPECT_NE(engine->Submit(bad).message().find("token_ids[1]"), std::string::npos);
}

TEST_F(UnitEngineTest, FullQueueIsResourceExhaustedAndDrainAbortsTheRest) {
  auto engine = MakeEngine(8 << 20, /*max_queued=*/2);
  std::vector<std::shared_ptr<Collector>> sinks;
  int exhausted = 0;
  for (int i = 0; i < 12; ++i) {
    auto sink = std::make_shared<Collector>();
    const absl::Status s = engine->Submit(Greedy("beta", Prompt(40, i), 200, sink));
    if (s.ok()) {
      sinks.push_back(sink);
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      ++exhausted;
    }
  }
  EXPECT_GT(exhausted, 0);
  engine->Drain(std::chrono::milliseconds(50));
  for (auto& sink : sinks) {
    const FinishReason reason = sink->Wait().reason;
    EXPECT_TRUE(reason == FinishReason::kAbort || reason == FinishReason::kLength);
  }
  auto after = std::make_shared<Collector>();
  EXPECT_EQ(engine->Submit(Greedy("beta", Prompt(3, 1), 2, after)).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace muxserve::engine
