#include "muxserve/planner/cost_model.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner_test_util.h"

namespace muxserve::planner {
namespace {

using ::testing::HasSubstr;

TEST(RooflineCostModelTest, DecodeAtBatchOneReadsTheWeights) {
  RooflineCostModel cost{config::GpuConfig{}};
  const ModelShape llama7b = testing_util::Llama7B();
  // 13.5 GB of weights at the GEMV bandwidth of 2.76 TB/s, plus the step overhead.
  const double seconds = cost.DecodeSeconds(llama7b, 1, 128, {1.0, 1});
  EXPECT_GT(seconds, 4.5e-3);
  EXPECT_LT(seconds, 6.0e-3);
}

TEST(RooflineCostModelTest, DecodeSaturatesBandwidthAtHalfTheSms) {
  RooflineCostModel cost{config::GpuConfig{}};
  const ModelShape llama7b = testing_util::Llama7B();
  const double eighth = cost.DecodeSeconds(llama7b, 8, 512, {0.125, 1});
  const double half = cost.DecodeSeconds(llama7b, 8, 512, {0.5, 1});
  const double whole = cost.DecodeSeconds(llama7b, 8, 512, {1.0, 1});
  EXPECT_GT(eighth, 2 * half);
  EXPECT_LT(half, 1.15 * whole);
}

TEST(RooflineCostModelTest, PrefillScalesWithSms) {
  RooflineCostModel cost{config::GpuConfig{}};
  const ModelShape llama7b = testing_util::Llama7B();
  const double quarter = cost.PrefillSeconds(llama7b, 8, 256, {0.25, 1});
  const double whole = cost.PrefillSeconds(llama7b, 8, 256, {1.0, 1});
  // 2048 tokens x ~14 GFLOP: ~36 ms at 790 TFLOP/s.
  EXPECT_GT(whole, 25e-3);
  EXPECT_LT(whole, 60e-3);
  EXPECT_GT(quarter / whole, 3.0);
}

TEST(RooflineCostModelTest, TensorParallelismSplitsTheWork) {
  RooflineCostModel cost{config::GpuConfig{}};
  const ModelShape llama13b = testing_util::Llama13B();
  const double one = cost.DecodeSeconds(llama13b, 16, 512, {1.0, 1});
  const double two = cost.DecodeSeconds(llama13b, 16, 512, {1.0, 2});
  EXPECT_LT(two, 0.65 * one);
  EXPECT_GT(two, 0.45 * one);  // the all-reduces cost something
}

TEST(RooflineCostModelTest, KvReadsAreGqaAware) {
  RooflineCostModel cost{config::GpuConfig{}};
  ModelShape mha = testing_util::Llama7B();
  ModelShape gqa = mha;
  gqa.spec.num_kv_heads = 8;
  const double mha_seconds = cost.DecodeSeconds(mha, 64, 2048, {1.0, 1});
  const double gqa_seconds = cost.DecodeSeconds(gqa, 64, 2048, {1.0, 1});
  // 64 x 2048 tokens x 512 KiB of KV is 69 GB for MHA, a quarter of it for GQA.
  EXPECT_GT(mha_seconds, 2 * gqa_seconds);
  EXPECT_THAT(cost.Describe(), HasSubstr("ESTIMATE"));
}

constexpr char kTable[] = R"({
  "format": "muxserve-cost-table-v1",
  "gpu": "H100-80GB",
  "grids": [{
    "model": "L32-H4096-A32-KV32-D128-I11008-V32000-bfloat16", "tp": 1, "phase": "decode",
    "sm_fractions": [0.5, 1.0], "batches": [1, 9], "tokens": [100, 300],
    "ms": [[[10, 20], [30, 40]], [[5, 10], [15, 20]]]
  }]
})";

TEST(TableCostModelTest, InterpolatesInsideTheGrid) {
  auto table = TableCostModel::Parse(kTable, "table.json", config::GpuConfig{});
  ASSERT_TRUE(table.ok()) << table.status();
  const ModelShape llama7b = testing_util::Llama7B();
  EXPECT_NEAR((*table)->DecodeSeconds(llama7b, 1, 100, {0.5, 1}), 10e-3, 1e-9);
  EXPECT_NEAR((*table)->DecodeSeconds(llama7b, 9, 300, {1.0, 1}), 20e-3, 1e-9);
  // Midway in batch and tokens at SM share 0.5: the mean of the four corners.
  EXPECT_NEAR((*table)->DecodeSeconds(llama7b, 5, 200, {0.5, 1}), 25e-3, 1e-9);
  // Midway in SM share too.
  EXPECT_NEAR((*table)->DecodeSeconds(llama7b, 5, 200, {0.75, 1}), 18.75e-3, 1e-9);
  EXPECT_EQ((*table)->fallbacks(), 0);
  EXPECT_THAT((*table)->Describe(), ::testing::Not(HasSubstr("ESTIMATE")));
}

TEST(TableCostModelTest, FallsBackToTheRooflineAndSaysSo) {
  auto table = TableCostModel::Parse(kTable, "table.json", config::GpuConfig{});
  ASSERT_TRUE(table.ok()) << table.status();
  RooflineCostModel roofline{config::GpuConfig{}};
  const ModelShape llama7b = testing_util::Llama7B();
  // Batch 64 lies outside the grid; prefill and TP 2 have no grid at all.
  EXPECT_DOUBLE_EQ((*table)->DecodeSeconds(llama7b, 64, 200, {1.0, 1}),
                   roofline.DecodeSeconds(llama7b, 64, 200, {1.0, 1}));
  EXPECT_DOUBLE_EQ((*table)->PrefillSeconds(llama7b, 4, 128, {1.0, 1}),
                   roofline.PrefillSeconds(llama7b, 4, 128, {1.0, 1}));
  EXPECT_DOUBLE_EQ((*table)->DecodeSeconds(llama7b, 4, 200, {1.0, 2}),
                   roofline.DecodeSeconds(llama7b, 4, 200, {1.0, 2}));
  EXPECT_EQ((*table)->fallbacks(), 3);
  EXPECT_THAT((*table)->Describe(), HasSubstr("3 lookups fell outside it"));
  EXPECT_THAT((*table)->Describe(), HasSubstr("ESTIMATE"));
}

TEST(TableCostModelTest, ErrorsNameTheField) {
  config::GpuConfig a100;
  a100.name = "A100-80GB";
  auto wrong_gpu = TableCostModel::Parse(kTable, "table.json", a100);
  ASSERT_FALSE(wrong_gpu.ok());
  EXPECT_THAT(wrong_gpu.status().message(), HasSubstr("table.json: field 'gpu'"));
  EXPECT_THAT(wrong_gpu.status().message(), HasSubstr("A100-80GB"));

  std::string bad_shape = kTable;
  bad_shape.replace(bad_shape.find("[15, 20]"), 8, "[15]");
  auto shape = TableCostModel::Parse(bad_shape, "table.json", config::GpuConfig{});
  ASSERT_FALSE(shape.ok());
  EXPECT_THAT(shape.status().message(), HasSubstr("field 'grids[0].ms'"));

  auto not_json = TableCostModel::Parse("{", "table.json", config::GpuConfig{});
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.status().message(), HasSubstr("table.json: invalid JSON"));

  auto missing = TableCostModel::Load("/nonexistent/table.json", config::GpuConfig{});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(ShapeKeyTest, NamesEveryDimension) {
  EXPECT_EQ(ShapeKey(testing_util::Llama7B()), "L32-H4096-A32-KV32-D128-I11008-V32000-bfloat16");
}

}  // namespace
}  // namespace muxserve::planner
