// The experiment runner's config copies (mode replaced, relative paths kept pointing at the same
// files) and its mode list.
#include "muxserve/loadgen/experiment.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/config/config.h"

namespace muxserve::loadgen {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class WriteConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest runs the tests of this fixture as parallel processes: a folder each.
    root_ = fs::path(testing::TempDir()) / ("loadgen_write_config_" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "configs");
    fs::create_directories(root_ / "models" / "real");
    std::ofstream(root_ / "models" / "real" / "config.json") << "{}";
    fs::create_directories(root_ / "out");
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path WriteSource(const std::string& text) {
    const fs::path path = root_ / "configs" / "daemon.yaml";
    std::ofstream(path) << text;
    return path;
  }

  fs::path root_;
};

TEST_F(WriteConfigTest, ReplacesTheModeAndAnchorsRelativePaths) {
  const fs::path source = WriteSource(
      "server:\n"
      "  synthetic_dir: ../cache   # relative to configs/\n"
      "scheduler:\n"
      "  mode: muxserve\n"
      "  max_batch_size: 8\n"
      "models:\n"
      "  - name: real\n"
      "    path: ../models/real\n"
      "  - name: tiny\n"
      "    synthetic: {layers: 1, hidden: 32, heads: 2, intermediate: 64}\n");
  const fs::path copy = root_ / "out" / "temporal.yaml";
  ASSERT_TRUE(WriteConfigWithMode(source, "temporal", copy).ok());
  absl::StatusOr<config::Config> config = config::LoadConfig(copy);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->scheduler.mode, config::SchedulerMode::kTemporal);
  EXPECT_EQ(config->scheduler.max_batch_size, 8);  // everything else is kept
  EXPECT_EQ(config->server.synthetic_dir, (root_ / "cache").lexically_normal());
  ASSERT_EQ(config->models.size(), 2u);
  EXPECT_EQ(config->models[0].path, (root_ / "models" / "real").lexically_normal());
  EXPECT_TRUE(config->models[1].synthetic.has_value());
}

TEST_F(WriteConfigTest, AnAbsentSyntheticDirKeepsTheSourcesDefault) {
  const fs::path source = WriteSource(
      "models:\n"
      "  - name: tiny\n"
      "    synthetic: {layers: 1, hidden: 32, heads: 2, intermediate: 64}\n");
  const fs::path copy = root_ / "out" / "spatial.yaml";
  ASSERT_TRUE(WriteConfigWithMode(source, "spatial", copy).ok());
  absl::StatusOr<config::Config> config = config::LoadConfig(copy);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->scheduler.mode, config::SchedulerMode::kSpatial);
  EXPECT_EQ(config->server.synthetic_dir, (root_ / "configs" / ".cache" / "synthetic"));
}

TEST_F(WriteConfigTest, BadSourcesAndModesAreErrors) {
  const fs::path copy = root_ / "out" / "bad.yaml";
  EXPECT_FALSE(WriteConfigWithMode(root_ / "configs" / "missing.yaml", "muxserve", copy).ok());
  const fs::path list = WriteSource("- just\n- a list\n");
  EXPECT_THAT(WriteConfigWithMode(list, "muxserve", copy).message(), HasSubstr("not a YAML map"));
  const fs::path source = WriteSource(
      "models:\n"
      "  - name: tiny\n"
      "    synthetic: {layers: 1, hidden: 32, heads: 2, intermediate: 64}\n");
  const absl::Status status = WriteConfigWithMode(source, "fastest", copy);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("scheduler.mode"));
}

TEST(ParseModesTest, AcceptsKnownModesOnce) {
  absl::StatusOr<std::vector<std::string>> modes = ParseModes("temporal, muxserve");
  ASSERT_TRUE(modes.ok());
  EXPECT_EQ(*modes, (std::vector<std::string>{"temporal", "muxserve"}));
  EXPECT_THAT(ParseModes("muxserve,fcfs").status().message(), HasSubstr("mode 'fcfs'"));
  EXPECT_THAT(ParseModes("spatial,spatial").status().message(), HasSubstr("given twice"));
  EXPECT_FALSE(ParseModes("").ok());
}

TEST(ParseLoadsTest, RateScalesAndTraceSpeedups) {
  absl::StatusOr<std::vector<LoadPoint>> scales = ParseLoads("20, 40,7.5", /*trace=*/false);
  ASSERT_TRUE(scales.ok()) << scales.status();
  ASSERT_EQ(scales->size(), 3u);
  EXPECT_EQ((*scales)[0].label, "scale20");
  EXPECT_DOUBLE_EQ((*scales)[0].rate_scale, 20);
  EXPECT_DOUBLE_EQ((*scales)[0].trace_speedup, 0);
  EXPECT_EQ((*scales)[2].label, "scale7.5");
  EXPECT_DOUBLE_EQ((*scales)[2].rate_scale, 7.5);

  absl::StatusOr<std::vector<LoadPoint>> speedups = ParseLoads("2,4", /*trace=*/true);
  ASSERT_TRUE(speedups.ok()) << speedups.status();
  EXPECT_EQ((*speedups)[1].label, "speedup4");
  EXPECT_DOUBLE_EQ((*speedups)[1].trace_speedup, 4);
  EXPECT_DOUBLE_EQ((*speedups)[1].rate_scale, 0);

  EXPECT_THAT(ParseLoads("20,fast", false).status().message(),
              HasSubstr("rate scales: 'fast' is not a number > 0"));
  EXPECT_THAT(ParseLoads("0", true).status().message(),
              HasSubstr("trace speed-ups: '0' is not a number > 0"));
  EXPECT_THAT(ParseLoads("2,2", false).status().message(), HasSubstr("given twice"));
  EXPECT_THAT(ParseLoads(" , ", false).status().message(), HasSubstr("none given"));
}

}  // namespace
}  // namespace muxserve::loadgen
