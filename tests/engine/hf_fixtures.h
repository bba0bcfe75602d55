// The HF transformers fixtures of tests/model/testdata/forward (make_forward.py): each holds a
// synthetic model's config.json and seed, prompts, HF's (fp32, eager) logits, its 64 greedy
// tokens and its five best tokens after each of 64 fed (teacher-forced) tokens. Shared by the
// CPU parity test and the CUDA one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/model/weights.h"
#include "nlohmann/json.hpp"
#include "test_models.h"

namespace muxserve::engine::hf {

inline constexpr int kNewTokens = 64;
// The fixtures make_forward.py writes, one per model shape.
inline const std::vector<std::string> kFixtureModels = {"llama2_mha", "llama3_gqa",
                                                        "qwen2_bias_tied"};

struct Fixture {
  nlohmann::json json;
  model::ModelSpec spec;
  std::filesystem::path dir;
};

// The fixtures' folder: where the build saw it, else relative to the working directory (a
// bundle run from the repository root on another machine).
inline std::filesystem::path FixtureDir() {
  const std::filesystem::path built(MUXSERVE_FORWARD_TESTDATA);
  return std::filesystem::exists(built) ? built : "tests/model/testdata/forward";
}

// Loads forward/<name>.json and writes its model (float32) into a temporary directory.
inline Fixture LoadFixture(const std::string& name) {
  Fixture fixture;
  std::ifstream in(FixtureDir() / (name + ".json"));
  EXPECT_TRUE(in.good()) << name;
  fixture.json = nlohmann::json::parse(in);
  absl::StatusOr<model::ModelSpec> spec =
      model::ParseModelSpec(fixture.json["config"].dump(), name + ".json config");
  EXPECT_TRUE(spec.ok()) << spec.status();
  fixture.spec = *spec;
  fixture.dir = testing::WriteTinyModel("hf_parity_" + name, fixture.spec,
                                        fixture.json["seed"].get<uint64_t>());
  return fixture;
}

// ||got - want|| / ||want||; the largest seen goes to `*largest`.
inline double RelativeError(std::span<const float> got, const std::vector<float>& want,
                            double* largest) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  *largest = std::max(*largest, std::sqrt(diff / norm));
  return std::sqrt(diff / norm);
}

inline int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// The `k` best token ids, best first.
inline std::vector<int32_t> TopK(std::span<const float> logits, size_t k) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  return ids;
}

// A fixture's model on one backend with a KV pool of its own, running one case at a time: the
// prompt as one prefill step, then one decode step per token.
class CaseRunner {
 public:
  static constexpr int64_t kMaxStepTokens = 32;

  // Loads the fixture's model onto `ops`; the pool holds `kv_dtype` head blocks of
  // `tokens_per_block` tokens.
  absl::Status Load(const Fixture& fixture, const std::string& name, Ops* ops, DType kv_dtype,
                    int64_t tokens_per_block) {
    const model::ModelSpec& spec = fixture.spec;
    ASSIGN_OR_RETURN(weights_, model::Weights::Load(fixture.dir, spec));
    ASSIGN_OR_RETURN(transformer_, Transformer::Load(spec, *weights_, ops, kMaxStepTokens, 1));
    constexpr int64_t kBlocks = 512;
    const int64_t block_bytes =
        2 * tokens_per_block * spec.head_dim * static_cast<int64_t>(DTypeSize(kv_dtype));
    pool_ = std::make_unique<kvcache::HeadBlockPool>(kBlocks, block_bytes, DTypeSize(kv_dtype));
    ASSIGN_OR_RETURN(memory_, ops->Allocate(kBlocks * block_bytes));
    shape_ = {spec.num_layers, spec.num_kv_heads, spec.head_dim};
    llm_ = pool_->RegisterLlm(name, shape_, 1);
    kv_ = {.pool = memory_.get(),
           .block_bytes = block_bytes,
           .tokens_per_block = tokens_per_block,
           .head_dim = spec.head_dim,
           .num_layers = spec.num_layers,
           .num_kv_heads = spec.num_kv_heads};
    return absl::OkStatus();
  }

  // The prompt, then `steps` decode steps, each feeding `next(step, logits)` of the logits just
  // computed; the logits of every step (steps + 1 of them).
  absl::StatusOr<std::vector<std::vector<float>>> Run(
      const std::vector<int32_t>& prompt, int steps,
      const std::function<int32_t(int, std::span<const float>)>& next) {
    if (static_cast<int64_t>(prompt.size()) > kMaxStepTokens) {
      return absl::InvalidArgumentError("the prompt is longer than one prefill step");
    }
    const int64_t total = static_cast<int64_t>(prompt.size()) + steps + 1;
    const int64_t token_blocks = (total + kv_.tokens_per_block - 1) / kv_.tokens_per_block;
    kvcache::BlockTable table(shape_);
    RETURN_IF_ERROR(pool_->Allocate(llm_, token_blocks * shape_.blocks_per_token_block(),
                                    table.mutable_ids()));
    std::vector<std::vector<float>> all_logits;
    std::vector<int32_t> step_tokens = prompt;
    int32_t done = 0;
    absl::Status status = absl::OkStatus();
    for (int step = 0; step <= steps && status.ok(); ++step) {
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
      status = transformer_->Forward(plan, kv_, &all_logits.emplace_back());
      done += count;
      if (step < steps) step_tokens = {next(step, all_logits.back())};
    }
    pool_->Free(llm_, table.ids());
    RETURN_IF_ERROR(status);
    return all_logits;
  }

 private:
  std::unique_ptr<model::Weights> weights_;
  std::unique_ptr<Transformer> transformer_;
  std::unique_ptr<kvcache::HeadBlockPool> pool_;
  Buffer memory_;
  kvcache::KvShape shape_{};
  int llm_ = 0;
  kernels::PagedKv kv_{};
};

// The serving path: every prompt of fixture `name` submitted at once to a UnitEngine of
// `options`, batched by its scheduler; each request's first `tokens` greedy tokens are HF's.
inline void ExpectUnitEngineGreedy(const std::string& name, const UnitOptions& options,
                                   DType dtype, int tokens) {
  Fixture fixture = LoadFixture(name);
  auto engine = UnitEngine::Create(options, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto tokenizer = model::Tokenizer::Load(fixture.dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_TRUE((*engine)
                  ->AddLlm({.name = name,
                            .model_dir = fixture.dir,
                            .spec = fixture.spec,
                            .tokenizer = std::move(*tokenizer),
                            .dtype = dtype,
                            .max_context = 256})
                  .ok());
  std::vector<std::shared_ptr<testing::Collector>> sinks;
  for (const nlohmann::json& test : fixture.json["cases"]) {
    auto sink = std::make_shared<testing::Collector>();
    Request request;
    request.model = name;
    request.prompt_tokens = test["prompt"].get<std::vector<int32_t>>();
    request.sampling = {.max_tokens = tokens, .temperature = 0, .ignore_eos = true};
    request.sink = sink;
    ASSERT_TRUE((*engine)->Submit(std::move(request)).ok());
    sinks.push_back(sink);
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    std::vector<int32_t> want = fixture.json["cases"][i]["greedy"].get<std::vector<int32_t>>();
    want.resize(static_cast<size_t>(tokens));
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->ids(), want) << name << " case " << i;
  }
  engine->reset();
  std::filesystem::remove_all(fixture.dir);
}

}  // namespace muxserve::engine::hf
