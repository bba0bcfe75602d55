// The placement plan at daemon start-up: what is logged, which units are served on which GPUs,
// and that a failed plan never stops the daemon.
#include "muxserve/server/startup_plan.h"

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/server/daemon.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Routes spdlog's default logger into a buffer while alive.
class CapturedLog {
 public:
  CapturedLog()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)),
        previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink_));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::string Text() const { return absl::StrJoin(sink_->last_formatted(), ""); }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

constexpr char kTinyModel[] = R"(
  - name: tiny
    synthetic: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128,
                max_position: 512, seed: 7}
)";

std::string WithTinyModel(const std::string& sections) { return sections + "models:" + kTinyModel; }

config::Config Parse(const std::string& yaml) {
  absl::StatusOr<config::Config> config = config::ParseConfig(yaml, "startup.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *std::move(config) : config::Config{};
}

// A plan of one unit holding `a` (rate 3, decode share 0.5) and `b` (rate 1, decode share 0.25).
planner::ConfigPlan TwoLlmPlan() {
  planner::ConfigPlan plan;
  plan.problem.models.resize(2);
  plan.problem.models[0].name = "a";
  plan.problem.models[0].rate = 3;
  plan.problem.models[1].name = "b";
  plan.problem.models[1].rate = 1;
  planner::UnitPlan unit;
  unit.gpus = {0};
  unit.llms = {{.model = 0, .decode_sm_share = 0.5}, {.model = 1, .decode_sm_share = 0.25}};
  plan.placement.units = {unit};
  return plan;
}

// A daemon config on the CPU backend, its synthetic models under `dir`, with `sections` (YAML
// ending in the models) after the server, runtime and kv_cache sections.
config::Config DaemonConfig(const fs::path& dir, const std::string& sections) {
  return Parse(R"(
server:
  grpc_address: 127.0.0.1:0
  metrics_address: ""
  shutdown_grace_seconds: 0.1
  synthetic_dir: )" + (dir / "synthetic").string() + R"(
runtime: {backend: cpu, cpu_threads: 1}
kv_cache: {memory: 16MiB}
)" + sections);
}

// Starts a daemon on `config`, runs `check` on it once its models settled (when `wait`), stops
// it and returns everything it logged.
std::string RunDaemon(const config::Config& config, bool wait,
                      const std::function<void(Daemon&)>& check) {
  CapturedLog log;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(config, {});
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  if (!daemon.ok()) return log.Text();
  if (wait) {
    EXPECT_TRUE((*daemon)->WaitForModels(absl::Seconds(60)));
  }
  check(**daemon);
  daemon->reset();
  return log.Text();
}

TEST(SpatialSmSharesTest, MemorySplitFollowsWeightsAndKvQuota) {
  // A popular small model and a quiet large one: by memory the large one owns most SMs, by
  // compute (rate x FLOPs) the popular one does.
  const config::Config config = Parse(R"(
models:
  - name: small
    synthetic: {layers: 16, hidden: 2048, heads: 32, kv_heads: 8, intermediate: 8192}
    dtype: bfloat16
    rate: 10
  - name: large
    synthetic: {layers: 32, hidden: 4096, heads: 32, intermediate: 11008}
    dtype: bfloat16
    rate: 1
)");
  ASSERT_EQ(config.models.size(), 2u);
  const model::ModelSpec& small = config.models[0].synthetic->spec;
  const model::ModelSpec& large = config.models[1].synthetic->spec;
  const int64_t kv = int64_t{40} << 30;
  absl::StatusOr<std::vector<std::pair<std::string, double>>> memory =
      SpatialSmShares(config.models, config::SpatialSplit::kMemory, kv);
  ASSERT_TRUE(memory.ok()) << memory.status();
  // Expected: each model's weights plus its share of the pool by rate x KV bytes per token.
  const double small_kv = 10.0 * static_cast<double>(small.KvBytesPerToken(DType::kBFloat16));
  const double large_kv = 1.0 * static_cast<double>(large.KvBytesPerToken(DType::kBFloat16));
  const double small_memory = static_cast<double>(small.WeightBytes(DType::kBFloat16)) +
                              static_cast<double>(kv) * small_kv / (small_kv + large_kv);
  const double large_memory = static_cast<double>(large.WeightBytes(DType::kBFloat16)) +
                              static_cast<double>(kv) * large_kv / (small_kv + large_kv);
  ASSERT_EQ(memory->size(), 2u);
  EXPECT_EQ((*memory)[0].first, "small");
  EXPECT_NEAR((*memory)[0].second, small_memory / (small_memory + large_memory), 1e-12);
  EXPECT_NEAR((*memory)[0].second + (*memory)[1].second, 1.0, 1e-12);
  EXPECT_LT((*memory)[0].second, 0.5);

  absl::StatusOr<std::vector<std::pair<std::string, double>>> compute =
      SpatialSmShares(config.models, config::SpatialSplit::kCompute, kv);
  ASSERT_TRUE(compute.ok()) << compute.status();
  const double small_flops = 10.0 * small.FlopsPerToken(0);
  const double large_flops = 1.0 * large.FlopsPerToken(0);
  EXPECT_NEAR((*compute)[0].second, small_flops / (small_flops + large_flops), 1e-12);
  EXPECT_GT((*compute)[0].second, 0.5);
}

TEST(SpatialSmSharesTest, SetSharesAreKeptAndTheRestIsSplit) {
  config::Config config = Parse(R"(
scheduler: {mode: spatial}
models:
  - {name: pinned, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}, sm_share: 0.25}
  - {name: a, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}}
  - {name: b, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}}
)");
  absl::StatusOr<std::vector<std::pair<std::string, double>>> shares =
      SpatialSmShares(config.models, config::SpatialSplit::kMemory, int64_t{1} << 30);
  ASSERT_TRUE(shares.ok()) << shares.status();
  EXPECT_DOUBLE_EQ((*shares)[0].second, 0.25);
  EXPECT_NEAR((*shares)[1].second, 0.375, 1e-12);  // equal models split the rest equally
  EXPECT_NEAR((*shares)[2].second, 0.375, 1e-12);

  config.models[1].sm_share = 0.8;
  absl::StatusOr<std::vector<std::pair<std::string, double>>> refused =
      SpatialSmShares(config.models, config::SpatialSplit::kMemory, int64_t{1} << 30);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("models[].sm_share: the shares add up to 1.05"));
}

TEST(RateRanksTest, MostRequestedFirstAndEqualRatesShareARank) {
  const config::Config config = Parse(R"(
models:
  - {name: quiet, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}, rate: 0.5}
  - {name: popular, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}, rate: 9}
  - {name: middle_a, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}, rate: 3}
  - {name: middle_b, synthetic: {layers: 2, hidden: 256, heads: 4, intermediate: 512}, rate: 3}
)");
  EXPECT_EQ(RateRanks(config.models), (std::vector<std::pair<std::string, int>>{
                                          {"quiet", 2}, {"popular", 0}, {"middle_a", 1},
                                          {"middle_b", 1}}));
}

TEST(StartupPlanTest, ConfigKnowsWhetherDecodeShareWasSet) {
  EXPECT_FALSE(Parse(WithTinyModel("scheduler: {mode: muxserve}\n")).scheduler.decode_sm_share_set);
  const config::Config set = Parse(WithTinyModel("scheduler: {decode_sm_share: 0.3}\n"));
  EXPECT_TRUE(set.scheduler.decode_sm_share_set);
  EXPECT_DOUBLE_EQ(set.scheduler.decode_sm_share, 0.3);
}

TEST(StartupPlanTest, DecodeShareIsTheRateWeightedMeanOfTheUnit) {
  const planner::ConfigPlan plan = TwoLlmPlan();
  ASSERT_TRUE(PlannedDecodeSmShare(plan).has_value());
  EXPECT_DOUBLE_EQ(*PlannedDecodeSmShare(plan), (3 * 0.5 + 1 * 0.25) / 4);

  planner::ConfigPlan whole = TwoLlmPlan();
  whole.placement.units[0].llms = {{.model = 0, .decode_sm_share = 1.0}};
  EXPECT_DOUBLE_EQ(*PlannedDecodeSmShare(whole), 0.875);  // the prefill keeps 1/8

  EXPECT_FALSE(PlannedDecodeSmShare(planner::ConfigPlan{}).has_value());
  EXPECT_FALSE(PlannedDecodeSmShare(plan, 1).has_value());  // no such unit
}

TEST(StartupPlanTest, PlanSetsDecodeShareOnlyWhenTheConfigDoesNot) {
  const planner::ConfigPlan plan = TwoLlmPlan();
  const double planned = (3 * 0.5 + 1 * 0.25) / 4;

  const config::Config unset = Parse(WithTinyModel("scheduler: {max_batch_size: 8}\n"));
  EXPECT_DOUBLE_EQ(ResolveUnitOptions(unset, &plan).scheduler.decode_sm_share, planned);
  EXPECT_EQ(ResolveUnitOptions(unset, &plan).scheduler.max_batch_size, 8);
  EXPECT_DOUBLE_EQ(ResolveUnitOptions(unset, nullptr).scheduler.decode_sm_share,
                   config::SchedulerConfig{}.decode_sm_share);

  const config::Config explicit_share = Parse(WithTinyModel("scheduler: {decode_sm_share: 0.3}\n"));
  EXPECT_DOUBLE_EQ(ResolveUnitOptions(explicit_share, &plan).scheduler.decode_sm_share, 0.3);

  const config::Config spatial = Parse(WithTinyModel("scheduler: {mode: spatial}\n"));
  EXPECT_DOUBLE_EQ(ResolveUnitOptions(spatial, &plan).scheduler.decode_sm_share,
                   config::SchedulerConfig{}.decode_sm_share);
}

TEST(StartupPlanTest, LogsThePlanTableOfMuxservePlan) {
  const config::Config config = Parse(std::string("models:") + kTinyModel);
  CapturedLog log;
  const std::optional<planner::ConfigPlan> plan = PlanAtStartup(config);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(log.Text(),
              HasSubstr(planner::FormatPlacement(plan->problem, plan->placement).substr(0, 40)));
  EXPECT_THAT(log.Text(), AllOf(HasSubstr("placement plan"), HasSubstr("SM PRE/DEC"),
                                HasSubstr("tiny"), HasSubstr("predicted throughput")));
}

constexpr char kOtherModel[] = R"(
  - name: other
    synthetic: {layers: 2, hidden: 64, heads: 4, intermediate: 128}
)";

TEST(StartupPlanTest, ServesThePlansUnitsOnTheirGpus) {
  const config::Config config = Parse(std::string(R"(
cluster: {nodes: 2, gpus_per_node: 2}
placement:
  units: [{gpus: [1], models: [tiny]}, {gpus: [2, 3], models: [other]}]
models:)") + kTinyModel + kOtherModel);
  CapturedLog log;
  const std::optional<planner::ConfigPlan> plan = PlanAtStartup(config);
  ASSERT_TRUE(plan.has_value());
  const ServingLayout layout = ResolveServingLayout(config, &*plan);
  ASSERT_EQ(layout.units.size(), 1u);
  EXPECT_EQ(layout.units[0].options.name, "unit0");
  EXPECT_EQ(layout.units[0].options.devices, std::vector<int>{1});
  EXPECT_EQ(layout.units[0].options.tensor_parallel, 1);
  EXPECT_EQ(layout.units[0].models, std::vector<std::string>{"tiny"});
  // The second unit is on node 1: another daemon's.
  ASSERT_EQ(layout.elsewhere.count("other"), 1u);
  EXPECT_THAT(layout.elsewhere.at("other"), HasSubstr("node 1"));
  EXPECT_THAT(log.Text(), AllOf(HasSubstr("serving unit0 (node0 GPU 1: tiny)"),
                                HasSubstr("[warning]"), HasSubstr("unit1 (node1 GPUs 2,3: other)")));
}

TEST(StartupPlanTest, AUnitOfSeveralGpusIsTensorParallel) {
  const config::Config config = Parse(std::string(R"(
cluster: {gpus_per_node: 4}
placement:
  units: [{gpus: [2, 3], models: [tiny, other]}]
models:)") + kTinyModel + kOtherModel);
  const std::optional<planner::ConfigPlan> plan = PlanAtStartup(config);
  ASSERT_TRUE(plan.has_value());
  const ServingLayout layout = ResolveServingLayout(config, &*plan);
  ASSERT_EQ(layout.units.size(), 1u);
  EXPECT_EQ(layout.units[0].options.devices, (std::vector<int>{2, 3}));
  EXPECT_EQ(layout.units[0].options.tensor_parallel, 2);
  EXPECT_EQ(layout.units[0].models, (std::vector<std::string>{"tiny", "other"}));
  EXPECT_TRUE(layout.elsewhere.empty());
}

TEST(StartupPlanTest, WithoutAPlanEveryModelIsOnOneUnitOnGpuZero) {
  const config::Config config = Parse(std::string("models:") + kTinyModel + kOtherModel);
  const ServingLayout layout = ResolveServingLayout(config, nullptr);
  ASSERT_EQ(layout.units.size(), 1u);
  EXPECT_EQ(layout.units[0].options.devices, std::vector<int>{0});
  EXPECT_EQ(layout.units[0].options.tensor_parallel, 1);
  EXPECT_EQ(layout.units[0].models, (std::vector<std::string>{"tiny", "other"}));
}

// A model larger than any unit: the planner's error is logged and the daemon serves anyway.
TEST(StartupPlanTest, DaemonStartsAndServesWhenPlanningFails) {
  const fs::path dir =
      fs::temp_directory_path() / ("muxserve_startup_plan_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const config::Config config =
      DaemonConfig(dir, std::string("cluster: {gpu: {memory: 100KB}}\nmodels:") + kTinyModel);
  const std::string text = RunDaemon(config, true, [](Daemon& daemon) {
    EXPECT_TRUE(daemon.router().FindServing("tiny").ok());
  });
  fs::remove_all(dir);
  EXPECT_THAT(text, AllOf(HasSubstr("[warning]"), HasSubstr("no placement plan"),
                          HasSubstr("model 'tiny' needs"), HasSubstr("offers")));
  EXPECT_THAT(text, Not(HasSubstr("SM PRE/DEC")));
}

// The daemon's own start-up log carries the table and the decode share it took from it.
TEST(StartupPlanTest, DaemonLogsThePlanAtStartup) {
  const fs::path dir =
      fs::temp_directory_path() / ("muxserve_startup_plan_log_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const std::string text =
      RunDaemon(DaemonConfig(dir, std::string("models:") + kTinyModel), false, [](Daemon&) {});
  fs::remove_all(dir);
  EXPECT_THAT(text, AllOf(HasSubstr("placement plan"), HasSubstr("SM PRE/DEC"),
                          HasSubstr("of the SMs beside a prefill (the plan's")));
}

// Two units on the CPU backend, one of them split over two ranks: every model serves, each from
// the unit the YAML pins it to.
TEST(StartupPlanTest, DaemonServesEveryUnitOfThePlan) {
  const fs::path dir =
      fs::temp_directory_path() / ("muxserve_startup_units_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const config::Config config = DaemonConfig(dir, std::string(R"(cluster: {gpus_per_node: 4}
placement:
  units: [{gpus: [0], models: [tiny]}, {gpus: [1, 2], models: [other]}]
models:)") + kTinyModel + kOtherModel);
  const std::string text = RunDaemon(config, true, [](Daemon& daemon) {
    auto tiny = daemon.router().FindServing("tiny");
    auto other = daemon.router().FindServing("other");
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ((*tiny)->unit, "unit0");
    EXPECT_EQ((*other)->unit, "unit1");
  });
  fs::remove_all(dir);
  EXPECT_THAT(text, AllOf(HasSubstr("serving unit1 (node0 GPUs 1,2: other), tensor parallel"),
                          HasSubstr("tensor parallel over 2 CPU ranks")));
}

}  // namespace
}  // namespace muxserve::server
