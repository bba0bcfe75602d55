// `muxserve profile` on the CPU backend: tiny synthetic models on small grids, read back by the
// planner; the cache by shape and GPU name; the time limit; errors.
#include "muxserve/profiler/profiler.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/cost_model.h"
#include "muxserve/planner/placement.h"

namespace muxserve::profiler {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

// Two tiny Llama shapes (MHA and GQA); tiny-b's max_context bounds the tokens a run may ask.
constexpr char kConfig[] = R"(
runtime: {backend: cpu, cpu_threads: 1}
kv_cache: {memory: 4MiB, block_bytes: 4KiB}
models:
  - name: tiny-a
    synthetic: {layers: 2, hidden: 64, heads: 4, kv_heads: 4, intermediate: 128, vocab: 320,
                max_position: 512, seed: 1}
  - name: tiny-b
    synthetic: {layers: 1, hidden: 96, heads: 6, kv_heads: 2, intermediate: 192, vocab: 320,
                max_position: 512, seed: 2}
    max_context: 256
)";

config::Config TestConfig() {
  absl::StatusOr<config::Config> config = config::ParseConfig(kConfig, "profile.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

ProfileOptions SmallGrid() {
  ProfileOptions options;
  options.backend = config::Backend::kCpu;
  options.decode_batches = {1, 16};
  options.prefill_batches = {1, 8};
  options.tokens = {16, 128};
  options.max_repetitions = 3;
  options.max_seconds_per_model = 60;
  return options;
}

planner::ModelShape ShapeOf(const config::Config& config, const std::string& name) {
  absl::StatusOr<planner::PlacementProblem> problem = planner::ProblemFromConfig(config);
  EXPECT_TRUE(problem.ok()) << problem.status();
  for (const planner::PlannerModel& model : problem->models) {
    if (model.name == name) return model.shape;
  }
  ADD_FAILURE() << "no model " << name;
  return {};
}

std::filesystem::path TempPath(const std::string& name) {
  const std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) /
      ("muxserve_profile_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove(path);
  return path;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> AllNotes(const ProfileResult& result) {
  std::vector<std::string> notes = result.notes;
  for (const ModelResult& model : result.models) {
    notes.insert(notes.end(), model.notes.begin(), model.notes.end());
  }
  return notes;
}

TEST(ProfilerTest, WritesATableThePlannerReads) {
  const config::Config config = TestConfig();
  ProfileOptions options = SmallGrid();
  int progress_calls = 0;
  options.on_progress = [&](const Progress& progress) {
    ++progress_calls;
    EXPECT_LE(progress.done, progress.total);
  };
  const std::filesystem::path path = TempPath("table.json");
  absl::StatusOr<ProfileResult> result = ProfileToFile(config, options, path);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->gpu, kCpuTableGpu);
  ASSERT_EQ(result->models.size(), 2u);
  EXPECT_GT(progress_calls, 8);
  // The CPU backend measures the whole machine only, and no interference.
  EXPECT_THAT(AllNotes(*result), Contains(HasSubstr("only the whole device")));
  EXPECT_THAT(AllNotes(*result), Contains(HasSubstr("interference: not measured")));

  config::GpuConfig cpu;
  cpu.name = kCpuTableGpu;
  absl::StatusOr<std::unique_ptr<planner::TableCostModel>> table =
      planner::TableCostModel::Load(path, cpu);
  ASSERT_TRUE(table.ok()) << table.status();
  const planner::JobPlace whole{.sm_fraction = 1.0, .tp = 1};
  for (const char* name : {"tiny-a", "tiny-b"}) {
    const planner::ModelShape shape = ShapeOf(config, name);
    SCOPED_TRACE(name);
    for (int64_t batch : {1, 4, 16}) {
      EXPECT_GT((*table)->DecodeSeconds(shape, batch, 64, whole), 0);
    }
    // Eight prompts are eight times the work of one: clearly slower, whatever the noise.
    EXPECT_GT((*table)->PrefillSeconds(shape, 8, 128, whole),
              (*table)->PrefillSeconds(shape, 1, 128, whole));
    EXPECT_GT((*table)->PrefillSeconds(shape, 8, 128, whole),
              (*table)->PrefillSeconds(shape, 8, 16, whole));
  }
  EXPECT_EQ((*table)->fallbacks(), 0) << (*table)->Describe();
  EXPECT_THAT((*table)->Describe(), ::testing::Not(HasSubstr("ESTIMATE")));

  absl::StatusOr<planner::CostTable> written = planner::LoadCostTable(path);
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->grids.size(), 4u);
  for (const planner::TableGrid& grid : written->grids) {
    EXPECT_TRUE(grid.complete);
    EXPECT_EQ(grid.tp, 1);
    EXPECT_EQ(grid.grid.sm_fractions, std::vector<double>{1.0});
    EXPECT_THAT(grid.source, HasSubstr("CPU backend"));
  }
}

TEST(ProfilerTest, SecondRunSkipsWhatTheTableHolds) {
  const config::Config config = TestConfig();
  ProfileOptions options = SmallGrid();
  options.models = {"tiny-a"};
  const std::filesystem::path path = TempPath("cache.json");
  ASSERT_TRUE(ProfileToFile(config, options, path).ok());
  const std::string first = ReadFile(path);

  // Same model again: nothing measured, the file untouched.
  absl::StatusOr<ProfileResult> again = ProfileToFile(config, options, path);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->models.size(), 1u);
  EXPECT_THAT(again->models[0].notes, Contains(HasSubstr("in the table already")));
  EXPECT_EQ(again->models[0].seconds, 0);
  EXPECT_EQ(ReadFile(path), first);

  // Every model: only tiny-b is measured and merged in.
  options.models.clear();
  absl::StatusOr<ProfileResult> merged = ProfileToFile(config, options, path);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_THAT(merged->models[0].notes, Contains(HasSubstr("decode: in the table already")));
  EXPECT_THAT(merged->models[1].notes, Contains(HasSubstr("decode: 4 points")));
  absl::StatusOr<planner::CostTable> table = planner::LoadCostTable(path);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->grids.size(), 4u);

  // --force measures again.
  options.force = true;
  options.models = {"tiny-a"};
  absl::StatusOr<ProfileResult> forced = ProfileToFile(config, options, path);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_THAT(forced->models[0].notes, Contains(HasSubstr("prefill: 4 points")));
}

TEST(ProfilerTest, MeasuresAnIncompleteGridAgain) {
  const config::Config config = TestConfig();
  const std::string shape = planner::ShapeKey(ShapeOf(config, "tiny-a"));
  planner::CostTable table{.gpu = kCpuTableGpu};
  table.PutGrid({.model = shape,
                 .tp = 1,
                 .phase = "decode",
                 .grid = {.sm_fractions = {1}, .batches = {1}, .tokens = {16}, .ms = {5}},
                 .complete = false});
  ProfileOptions options = SmallGrid();
  options.models = {"tiny-a"};
  absl::StatusOr<ProfileResult> result = Profile(config, options, &table);
  ASSERT_TRUE(result.ok()) << result.status();
  const planner::TableGrid* decode = table.FindGrid(shape, 1, "decode");
  ASSERT_NE(decode, nullptr);
  EXPECT_TRUE(decode->complete);
  EXPECT_EQ(decode->grid.ms.size(), 4u);
}

TEST(ProfilerTest, PointsLargerThanThePoolReuseBlocksAndSaySo) {
  config::Config config = TestConfig();
  config.kv_cache.memory_bytes = 48 << 10;  // 12 blocks: 1.5 token blocks of tiny-a's 8 heads
  ProfileOptions options = SmallGrid();
  options.models = {"tiny-a"};
  planner::CostTable table;
  absl::StatusOr<ProfileResult> result = Profile(config, options, &table);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->models[0].notes, Contains(HasSubstr("reuse KV blocks")));
  ASSERT_EQ(table.grids.size(), 2u);
  EXPECT_THAT(table.grids[0].source, HasSubstr("reuse KV blocks"));

  config.kv_cache.memory_bytes = 16 << 10;  // less than one token block of every layer and head
  options.force = true;
  absl::StatusOr<ProfileResult> too_small = Profile(config, options, &table);
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_small.status().message(), HasSubstr("loading model 'tiny-a'"));
}

TEST(ProfilerTest, StopsWhenTheTimeIsSpent) {
  const config::Config config = TestConfig();
  ProfileOptions options = SmallGrid();
  options.models = {"tiny-a"};
  options.max_seconds_per_model = 1e-6;
  planner::CostTable table;
  absl::StatusOr<ProfileResult> result = Profile(config, options, &table);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(table.grids.empty());
  EXPECT_THAT(result->models[0].notes, Contains(HasSubstr("budget ran out after 0 of 4 points")));
}

TEST(ProfilerTest, RejectsBadOptionsNamingThem) {
  auto error_of = [](const ProfileOptions& options) {
    return std::string(ValidateOptions(options).message());
  };
  ProfileOptions options = SmallGrid();
  EXPECT_TRUE(ValidateOptions(options).ok());
  options.sm_fractions = {0.5, 1.5};
  EXPECT_THAT(error_of(options), HasSubstr("--sm-fractions"));
  options = SmallGrid();
  options.sm_fractions = {1.0, 0.5};
  EXPECT_THAT(error_of(options), HasSubstr("increasing"));
  options = SmallGrid();
  options.decode_batches = {0, 4};
  EXPECT_THAT(error_of(options), HasSubstr("--batches"));
  options = SmallGrid();
  options.prefill_batches = {};
  EXPECT_THAT(error_of(options), HasSubstr("--prefill-batches"));
  options = SmallGrid();
  options.tokens = {64, 64};
  EXPECT_THAT(error_of(options), HasSubstr("--tokens"));
  options = SmallGrid();
  options.max_seconds_per_model = 0;
  EXPECT_THAT(error_of(options), HasSubstr("--max-seconds-per-model"));

  // Profile checks them too, before anything runs.
  options = SmallGrid();
  options.tokens = {1, 8};
  planner::CostTable table;
  absl::StatusOr<ProfileResult> result = Profile(TestConfig(), options, &table);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProfilerTest, ErrorsNameTheModelAndWhatFailed) {
  const config::Config config = TestConfig();
  planner::CostTable table;
  ProfileOptions options = SmallGrid();
  options.models = {"tiny-a", "nope"};
  absl::StatusOr<ProfileResult> unknown = Profile(config, options, &table);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("no model 'nope' in profile.yaml"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("tiny-a, tiny-b"));

  // tiny-b serves at most 256 tokens.
  options = SmallGrid();
  options.tokens = {16, 512};
  absl::StatusOr<ProfileResult> too_long = Profile(config, options, &table);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.status().message(), HasSubstr("model 'tiny-b'"));
  EXPECT_THAT(too_long.status().message(), HasSubstr("256"));

  // A table of another GPU is not mixed with this run's.
  planner::CostTable h100{.gpu = "H100-80GB"};
  absl::StatusOr<ProfileResult> other = Profile(config, SmallGrid(), &h100);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("'H100-80GB'"));

  // A broken file is reported, not overwritten.
  const std::filesystem::path path = TempPath("broken.json");
  std::ofstream(path) << "{\"format\": \"something else\"}";
  absl::StatusOr<ProfileResult> broken = ProfileToFile(config, SmallGrid(), path);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.status().message(), HasSubstr("broken.json: field 'format'"));
  EXPECT_EQ(ReadFile(path), "{\"format\": \"something else\"}");

  // A KV block too small for the model's head size names the model.
  config::Config small_blocks = config;
  small_blocks.kv_cache.block_bytes = 64;
  absl::StatusOr<ProfileResult> blocks = Profile(small_blocks, SmallGrid(), &table);
  EXPECT_FALSE(blocks.ok());
  EXPECT_THAT(blocks.status().message(), HasSubstr("loading model 'tiny-a'"));
  EXPECT_THAT(blocks.status().message(), HasSubstr("kv_cache.block_bytes"));
}

}  // namespace
}  // namespace muxserve::profiler
