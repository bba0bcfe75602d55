// `muxserve profile` on the CUDA backend: grids on green partitions and the interference of two
// models. Skips without a device.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/cost_model.h"
#include "muxserve/planner/placement.h"
#include "muxserve/profiler/profiler.h"
#include "muxserve/runtime/device.h"

namespace muxserve::profiler {
namespace {

constexpr char kConfig[] = R"(
cluster: {gpu: {name: test-gpu}}
kv_cache: {memory: 256MiB}
models:
  - name: small-a
    synthetic: {layers: 2, hidden: 512, heads: 8, kv_heads: 2, intermediate: 1024, vocab: 1024,
                max_position: 1024, seed: 1}
    dtype: bfloat16
  - name: small-b
    synthetic: {layers: 4, hidden: 256, heads: 4, kv_heads: 4, intermediate: 512, vocab: 1024,
                max_position: 1024, seed: 2}
    dtype: bfloat16
)";

TEST(ProfilerGpuTest, MeasuresGridsOnPartitionsAndInterference) {
  const auto devices = runtime::ListCudaDevices();
  if (!devices.ok() || devices->empty()) GTEST_SKIP() << "no CUDA device";
  absl::StatusOr<config::Config> config = config::ParseConfig(kConfig, "gpu.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ProfileOptions options;
  options.backend = config::Backend::kCuda;
  options.sm_fractions = {0.5, 1.0};
  options.decode_batches = {1, 8};
  options.prefill_batches = {1, 2};
  options.tokens = {64, 256};
  options.max_repetitions = 3;
  planner::CostTable table;
  absl::StatusOr<ProfileResult> result = Profile(*config, options, &table);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(table.gpu, "test-gpu");
  ASSERT_EQ(table.grids.size(), 4u);
  const bool partitioned = result->device.find("none partitions") == std::string::npos;
  for (const planner::TableGrid& grid : table.grids) {
    EXPECT_TRUE(grid.complete) << grid.model << " " << grid.phase;
    EXPECT_EQ(grid.grid.sm_fractions.size(), partitioned ? 2u : 1u);
  }
  if (partitioned) {
    ASSERT_EQ(table.interference.size(), 2u);
    for (const planner::InterferenceEntry& entry : table.interference) {
      EXPECT_GT(entry.alone_ms, 0);
      EXPECT_GT(entry.slowdown, 0);
      EXPECT_LT(entry.decode_sm_fraction, 1);
    }
  }

  absl::StatusOr<std::unique_ptr<planner::TableCostModel>> cost =
      planner::TableCostModel::FromTable(table, "gpu table", config->cluster.gpu);
  ASSERT_TRUE(cost.ok()) << cost.status();
  absl::StatusOr<planner::PlacementProblem> problem = planner::ProblemFromConfig(*config);
  ASSERT_TRUE(problem.ok()) << problem.status();
  for (const planner::PlannerModel& model : problem->models) {
    EXPECT_GT((*cost)->DecodeSeconds(model.shape, 4, 128, {.sm_fraction = 1.0, .tp = 1}), 0);
    EXPECT_GT((*cost)->PrefillSeconds(model.shape, 2, 256, {.sm_fraction = 1.0, .tp = 1}),
              (*cost)->PrefillSeconds(model.shape, 1, 64, {.sm_fraction = 1.0, .tp = 1}));
  }
  EXPECT_EQ((*cost)->fallbacks(), 0);
}

}  // namespace
}  // namespace muxserve::profiler
