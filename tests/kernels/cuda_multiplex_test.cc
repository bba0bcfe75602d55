// Two models of different head sizes and dtypes (bf16 and fp16, sharing the unit's KV pool) in
// one unit on the GPU, served in each scheduling mode:
// muxserve runs their jobs at the same time on SM partitions, spatial gives each model a
// partition of its own, temporal runs one job at a time; all three give the same greedy tokens.
// Skipped without a CUDA device.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gpu_test_util.h"
#include "gtest/gtest.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/synthetic.h"
#include "muxserve/model/tokenizer.h"

namespace muxserve::engine {
namespace {

using ::muxserve::testing::SmallSpec;
using ::muxserve::testing::TokenCollector;

class JobRecorder : public EngineObserver {
 public:
  void OnFirstToken(const std::string&, int32_t, double, double) override {}
  void OnTokens(const std::string&, std::span<const double>) override {}
  void OnFinished(const std::string&, FinishReason, double) override {}
  void OnLlmState(const LlmState&) override {}
  void OnJob(const JobReport& job) override {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(job);
  }
  std::vector<JobReport> jobs() {
    absl::MutexLock lock(&mu_);
    return jobs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<JobReport> jobs_ ABSL_GUARDED_BY(mu_);
};

struct TestModel {
  std::string name;
  model::ModelSpec spec;
  std::filesystem::path dir;
};

struct ModeRun {
  std::vector<std::vector<int32_t>> outputs;  // per request
  std::vector<JobReport> jobs;
};

bool Overlap(const JobReport& a, const JobReport& b) {
  return a.started < b.ended && b.started < a.ended;
}

ModeRun Serve(config::SchedulerMode mode, const std::vector<TestModel>& models,
              const std::vector<std::pair<int, std::vector<int32_t>>>& requests, int tokens) {
  ModeRun run;
  JobRecorder recorder;
  UnitOptions options;
  options.backend = config::Backend::kCuda;
  options.kv_cache = {.memory_bytes = 64 << 20, .block_bytes = 16384};
  options.scheduler.mode = mode;
  options.scheduler.max_prefill_tokens = 256;
  // Exclusive partitions, so that each job's partition shows in its report.
  options.partitions = config::PartitionBackend::kGreen;
  for (const TestModel& m : models) options.spatial_sm_shares.emplace_back(m.name, 0.5);
  // muxserve mode with decode streams ranked by rate: the priorities change the order of blocks,
  // never the outputs.
  options.scheduler.decode_priority = config::DecodePriority::kByRate;
  for (size_t i = 0; i < models.size(); ++i) {
    options.rate_ranks.emplace_back(models[i].name, static_cast<int>(i));
  }
  auto engine = UnitEngine::Create(options, &recorder);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return run;
  for (const TestModel& m : models) {
    auto tokenizer = model::Tokenizer::Load(m.dir);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    const absl::Status added = (*engine)->AddLlm({.name = m.name,
                                                  .model_dir = m.dir,
                                                  .spec = m.spec,
                                                  .tokenizer = std::move(*tokenizer),
                                                  .dtype = m.spec.dtype,
                                                  .max_context = 512});
    EXPECT_TRUE(added.ok()) << added;
  }
  std::vector<std::shared_ptr<TokenCollector>> sinks;
  for (const auto& [model, prompt] : requests) {
    sinks.push_back(std::make_shared<TokenCollector>());
    Request request;
    request.model = models[model].name;
    request.prompt_tokens = prompt;
    request.sampling = {.max_tokens = tokens, .temperature = 0, .ignore_eos = true};
    request.sink = sinks.back();
    EXPECT_TRUE((*engine)->Submit(std::move(request)).ok());
  }
  for (auto& sink : sinks) run.outputs.push_back(sink->Wait());
  engine->reset();  // joins the loop: every job has been reported
  run.jobs = recorder.jobs();
  return run;
}

TEST(CudaMultiplexTest, ModesAgreeAndOnlyMuxserveAndSpatialOverlapJobs) {
  if (!::muxserve::testing::HaveCudaDevice()) GTEST_SKIP() << "no CUDA device";
  std::vector<TestModel> models = {
      {"small", SmallSpec(2, 256, 4, 2, 688), {}},                           // head_dim 64
      {"wide", SmallSpec(3, 512, 4, 4, 1024, false, DType::kFloat16), {}}};  // head_dim 128
  for (TestModel& m : models) {
    m.dir = std::filesystem::path(::testing::TempDir()) / ("muxserve_multiplex_" + m.name);
    std::filesystem::remove_all(m.dir);
    ASSERT_TRUE(
        model::WriteSyntheticModel(m.dir, {.spec = m.spec, .seed = 7, .weight_dtype = m.spec.dtype})
            .ok());
  }
  std::mt19937 rng(3);
  std::vector<std::pair<int, std::vector<int32_t>>> requests;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> prompt(40 + 17 * i);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % 250) + 3;
    requests.emplace_back(i % 2, std::move(prompt));
  }
  constexpr int kTokens = 24;
  const ModeRun temporal = Serve(config::SchedulerMode::kTemporal, models, requests, kTokens);
  const ModeRun muxserve = Serve(config::SchedulerMode::kMuxserve, models, requests, kTokens);
  const ModeRun spatial = Serve(config::SchedulerMode::kSpatial, models, requests, kTokens);
  ASSERT_EQ(temporal.outputs.size(), requests.size());
  ASSERT_EQ(muxserve.outputs.size(), requests.size());
  ASSERT_EQ(spatial.outputs.size(), requests.size());

  // Batches differ between modes, and cuBLAS picks kernels by the SMs it has: 16-bit rounding may
  // flip a near-tie now and then, never most outputs.
  int same_muxserve = 0, same_spatial = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    EXPECT_EQ(temporal.outputs[r].size(), static_cast<size_t>(kTokens));
    same_muxserve += muxserve.outputs[r] == temporal.outputs[r];
    same_spatial += spatial.outputs[r] == temporal.outputs[r];
  }
  std::printf("identical to temporal: muxserve %d/%zu, spatial %d/%zu\n", same_muxserve,
              requests.size(), same_spatial, requests.size());
  EXPECT_GE(same_muxserve, 10);
  EXPECT_GE(same_spatial, 10);

  // Temporal: one job at a time.
  for (size_t i = 0; i < temporal.jobs.size(); ++i) {
    for (size_t j = i + 1; j < temporal.jobs.size(); ++j) {
      ASSERT_FALSE(Overlap(temporal.jobs[i], temporal.jobs[j])) << "temporal jobs overlap";
    }
  }
  // Muxserve: jobs of different lanes ran at the same time, on more than one partition.
  int overlapping = 0;
  std::set<std::string> labels;
  for (size_t i = 0; i < muxserve.jobs.size(); ++i) {
    labels.insert(muxserve.jobs[i].partition);
    for (size_t j = i + 1; j < muxserve.jobs.size(); ++j) {
      overlapping += Overlap(muxserve.jobs[i], muxserve.jobs[j]);
    }
  }
  std::printf("muxserve: %zu jobs, %d overlapping pairs, partitions:", muxserve.jobs.size(),
              overlapping);
  for (const std::string& label : labels) std::printf(" %s", label.c_str());
  std::printf("\n");
  EXPECT_GT(overlapping, 0);
  EXPECT_GE(labels.size(), 2u);
  // Spatial: each model always on its own partition.
  std::set<std::string> small_labels, wide_labels;
  for (const JobReport& job : spatial.jobs) {
    (job.model == "small" ? small_labels : wide_labels).insert(job.partition);
  }
  EXPECT_EQ(small_labels.size(), 1u);
  EXPECT_EQ(wide_labels.size(), 1u);
  EXPECT_NE(small_labels, wide_labels);
  for (TestModel& m : models) std::filesystem::remove_all(m.dir);
}

}  // namespace
}  // namespace muxserve::engine
