// The YAML's cluster: and placement: sections, and planning straight from a config.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/placement.h"

namespace muxserve::planner {
namespace {

using ::testing::HasSubstr;

constexpr char kModels[] = R"(
models:
  - name: a
    synthetic: {layers: 32, hidden: 4096, heads: 32, intermediate: 11008, vocab: 32000}
    rate: 4
  - name: b
    synthetic: {layers: 40, hidden: 5120, heads: 40, kv_heads: 8, intermediate: 13824, vocab: 32000}
    rate: 1
)";

absl::StatusOr<config::Config> Parse(const std::string& sections) {
  return config::ParseConfig(sections + kModels, "plan.yaml");
}

TEST(PlanConfigTest, DefaultsAreOneH100) {
  auto config = Parse("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster.nodes, 1);
  EXPECT_EQ(config->cluster.gpus_per_node, 1);
  EXPECT_EQ(config->cluster.gpu.memory_bytes, 80'000'000'000);
  EXPECT_EQ(config->cluster.gpu.sm_count, 132);
  EXPECT_EQ(config->placement.prompt_tokens, 161);
  EXPECT_TRUE(config->placement.units.empty());
}

TEST(PlanConfigTest, ParsesClusterAndPinnedUnits) {
  auto config = Parse(R"(
cluster:
  nodes: 2
  gpus_per_node: 4
  gpu: {name: H200, memory: 141GB, sm_count: 132, bandwidth: 4.8e12, flops: 989e12}
placement:
  prompt_tokens: 512
  output_tokens: 128
  units:
    - {gpus: [4, 5], models: [a]}
    - {gpus: [0], models: [b]}
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster.gpu.name, "H200");
  EXPECT_EQ(config->cluster.gpu.memory_bytes, 141'000'000'000);
  ASSERT_EQ(config->placement.units.size(), 2u);
  EXPECT_EQ(config->placement.units[0].gpus, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(config->placement.units[1].models, std::vector<std::string>{"b"});

  auto problem = ProblemFromConfig(*config);
  ASSERT_TRUE(problem.ok()) << problem.status();
  EXPECT_EQ(problem->models[1].shape.spec.num_kv_heads, 8);
  EXPECT_EQ(problem->models[0].prompt_tokens, 512);
  auto cost = CostModelFromConfig(*config);
  ASSERT_TRUE(cost.ok()) << cost.status();
  auto placement = EvaluatePinned(*problem, config->placement.units, **cost);
  ASSERT_TRUE(placement.ok()) << placement.status();
  EXPECT_EQ(placement->units[0].gpus, (std::vector<int64_t>{4, 5}));
}

TEST(PlanConfigTest, BadSectionsNameLineAndKey) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"cluster: {gpus_per_node: 3}\n", "key 'cluster.gpus_per_node': must be 1, 2, 4 or 8"},
      {"cluster: {gpu: {memory: lots}}\n", "key 'cluster.gpu.memory'"},
      {"cluster: {gpu: {cores: 5}}\n", "key 'cluster.gpu.cores': unknown key"},
      {"placement: {units: [{gpus: [0], models: [a]}]}\n", "model 'b' is in no unit"},
      {"placement: {units: [{gpus: [1], models: [a, b]}]}\n", "expected a GPU id in [0, 1)"},
      {"cluster: {gpus_per_node: 4}\nplacement: {units: [{gpus: [0, 1, 2], models: [a, b]}]}\n",
       "a unit is 1, 2, 4 or 8 GPUs of one node"},
      {"cluster: {gpus_per_node: 4}\nplacement: {units: [{gpus: [0], models: [a, c]}]}\n",
       "unknown model 'c'"},
      {"cluster: {gpus_per_node: 4}\n"
       "placement: {units: [{gpus: [0], models: [a]}, {gpus: [0], models: [b]}]}\n",
       "GPU 0 is already in the unit at line 2"},
      {"placement: {prompt_tokens: 0}\n", "key 'placement.prompt_tokens': must be >= 1"},
  };
  for (const Case& test : cases) {
    auto config = Parse(test.yaml);
    ASSERT_FALSE(config.ok()) << test.yaml;
    EXPECT_THAT(config.status().message(), HasSubstr("plan.yaml:")) << test.yaml;
    EXPECT_THAT(config.status().message(), HasSubstr(test.message)) << test.yaml;
  }
}

TEST(PlanConfigTest, MissingCostTableIsAnError) {
  auto config = Parse("placement: {cost_table: /nonexistent/table.json}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  auto cost = CostModelFromConfig(*config);
  ASSERT_FALSE(cost.ok());
  EXPECT_THAT(cost.status().message(), HasSubstr("/nonexistent/table.json"));
}

TEST(PlanConfigTest, PlansThePaperSetting) {
  auto config =
      config::LoadConfig(std::string(MUXSERVE_SOURCE_DIR) + "/configs/paper-synthetic.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->models.size(), 19u);
  EXPECT_EQ(config->cluster.nodes * config->cluster.gpus_per_node, 32);
  auto problem = ProblemFromConfig(*config);
  ASSERT_TRUE(problem.ok()) << problem.status();
  auto cost = CostModelFromConfig(*config);
  ASSERT_TRUE(cost.ok()) << cost.status();
  auto placement = PlanPlacement(*problem, **cost);
  ASSERT_TRUE(placement.ok()) << placement.status();
  int placed = 0;
  for (const UnitPlan& unit : placement->units) placed += static_cast<int>(unit.llms.size());
  EXPECT_EQ(placed, 19);
  EXPECT_LT(placement->plan_seconds, 10.0);
}

}  // namespace
}  // namespace muxserve::planner
