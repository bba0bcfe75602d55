// The cost table file: what `muxserve profile` writes is what TableCostModel reads.
#include "muxserve/planner/cost_table.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/planner/cost_model.h"
#include "planner_test_util.h"

namespace muxserve::planner {
namespace {

using ::testing::HasSubstr;

CostTable SampleTable() {
  CostTable table{.gpu = "H200"};
  table.PutGrid({.model = ShapeKey(testing_util::Llama7B()),
                 .tp = 1,
                 .phase = "decode",
                 .grid = {.sm_fractions = {0.25, 1.0},
                          .batches = {1, 8},
                          .tokens = {128},
                          .ms = {4.5, 6.25, 2.5, 3.125}},
                 .source = "NVIDIA H200 (132 SMs), green partitions"});
  table.PutGrid({.model = ShapeKey(testing_util::Llama7B()),
                 .tp = 1,
                 .phase = "prefill",
                 .grid = {.sm_fractions = {1.0}, .batches = {1}, .tokens = {512}, .ms = {40}},
                 .complete = false});
  table.PutInterference({.decode_model = "a",
                         .prefill_model = "b",
                         .decode_shape = "shape-a",
                         .prefill_shape = "shape-b",
                         .decode_sm_fraction = 0.25,
                         .decode_batch = 32,
                         .decode_context = 512,
                         .prefill_batch = 1,
                         .prefill_tokens = 2048,
                         .alone_ms = 10,
                         .with_prefill_ms = 12,
                         .slowdown = 1.2});
  return table;
}

TEST(CostTableTest, RoundTripsThroughJson) {
  const CostTable table = SampleTable();
  const std::string json = CostTableToJson(table);
  EXPECT_THAT(json, HasSubstr("\"batches\": [\n        1,\n        8\n      ]"));
  absl::StatusOr<CostTable> parsed = ParseCostTable(json, "t.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(CostTableToJson(*parsed), json);
  ASSERT_EQ(parsed->grids.size(), 2u);
  EXPECT_TRUE(parsed->grids[0].complete);
  EXPECT_FALSE(parsed->grids[1].complete);
  EXPECT_EQ(parsed->grids[0].source, "NVIDIA H200 (132 SMs), green partitions");
  EXPECT_EQ(parsed->grids[0].grid.ms, (std::vector<double>{4.5, 6.25, 2.5, 3.125}));
  ASSERT_EQ(parsed->interference.size(), 1u);
  EXPECT_DOUBLE_EQ(parsed->interference[0].slowdown, 1.2);
  EXPECT_EQ(parsed->interference[0].prefill_tokens, 2048);
}

TEST(CostTableTest, TheCostModelReadsItsGridsAndSkipsTheRest) {
  config::GpuConfig h200;
  h200.name = "H200";
  std::string json = CostTableToJson(SampleTable());
  json.insert(json.find("\"grids\""), "\"written_by\": \"a later version\",\n  ");
  absl::StatusOr<std::unique_ptr<TableCostModel>> cost = TableCostModel::Parse(json, "t", h200);
  ASSERT_TRUE(cost.ok()) << cost.status();
  EXPECT_NEAR((*cost)->DecodeSeconds(testing_util::Llama7B(), 8, 128, {1.0, 1}), 3.125e-3, 1e-12);
  EXPECT_EQ((*cost)->fallbacks(), 0);
}

TEST(CostTableTest, PutReplacesTheSameKey) {
  CostTable table = SampleTable();
  TableGrid decode = *table.FindGrid(ShapeKey(testing_util::Llama7B()), 1, "decode");
  decode.grid.ms = {1, 1, 1, 1};
  table.PutGrid(decode);
  EXPECT_EQ(table.grids.size(), 2u);
  EXPECT_EQ(table.FindGrid(decode.model, 1, "decode")->grid.ms[0], 1);
  EXPECT_EQ(table.FindGrid(decode.model, 2, "decode"), nullptr);

  InterferenceEntry entry = table.interference[0];
  entry.slowdown = 2;
  table.PutInterference(entry);
  entry.decode_sm_fraction = 0.5;
  table.PutInterference(entry);
  EXPECT_EQ(table.interference.size(), 2u);
  EXPECT_EQ(table.FindInterference("shape-a", "shape-b", 0.25)->slowdown, 2);
  EXPECT_EQ(table.FindInterference("shape-b", "shape-a", 0.25), nullptr);
}

TEST(CostTableTest, ErrorsNameTheField) {
  std::string json = CostTableToJson(SampleTable());
  std::string bad = json;
  bad.replace(bad.find("\"alone_ms\""), 10, "\"alone\"");
  EXPECT_THAT(ParseCostTable(bad, "t.json").status().message(),
              HasSubstr("t.json: field 'interference[0].alone_ms'"));
  bad = json;
  bad.replace(bad.find("\"decode_sm_fraction\": 0.25"), 26, "\"decode_sm_fraction\": 1.0");
  EXPECT_THAT(ParseCostTable(bad, "t.json").status().message(),
              HasSubstr("interference[0].decode_sm_fraction"));
  bad = json;
  bad.replace(bad.find("\"complete\": false"), 17, "\"complete\": 0");
  EXPECT_THAT(ParseCostTable(bad, "t.json").status().message(), HasSubstr("grids[1].complete"));
  // Fields of the wrong type are an error, never an exception (a number as the format was one).
  for (const char* wrong : {R"({"format": 5})", R"({"format": "muxserve-cost-table-v1", "gpu": 1})",
                            R"([1, 2])", "{"}) {
    const absl::StatusOr<CostTable> parsed = ParseCostTable(wrong, "t.json");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << wrong;
    EXPECT_THAT(parsed.status().message(), HasSubstr("t.json")) << wrong;
  }
}

TEST(CostTableTest, WritesThroughATemporaryFile) {
  const std::filesystem::path path = std::filesystem::path(::testing::TempDir()) /
                                     ("muxserve_cost_table_" + std::to_string(::getpid()));
  ASSERT_TRUE(WriteCostTable(SampleTable(), path).ok());
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
  absl::StatusOr<CostTable> loaded = LoadCostTable(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(CostTableToJson(*loaded), CostTableToJson(SampleTable()));
  EXPECT_EQ(LoadCostTable(path.string() + ".missing").status().code(),
            absl::StatusCode::kNotFound);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace muxserve::planner
