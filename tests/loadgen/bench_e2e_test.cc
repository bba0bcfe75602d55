// muxserve bench against a real muxserved on the CPU backend (two tiny synthetic models): every
// request sent is accounted for as finished, error or aborted, and the files are written.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/loadgen/bench.h"
#include "muxserve/loadgen/daemon_process.h"
#include "muxserve/loadgen/driver.h"
#include "muxserve/loadgen/experiment.h"
#include "muxserve/loadgen/report.h"
#include "muxserve/loadgen/trace.h"

namespace muxserve::loadgen {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;
namespace pb = ::muxserve::v1;

fs::path BuildDir() {
  const char* dir = std::getenv("MUXSERVE_BUILD_DIR");
  return dir != nullptr ? fs::path(dir) : fs::current_path();
}

int64_t CountLines(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  int64_t lines = 0;
  while (std::getline(in, line)) lines += line.empty() ? 0 : 1;
  return lines;
}

// Short probes: the base latency is measured, but quickly.
ProbeOptions QuickProbes() {
  ProbeOptions probe;
  probe.prompt_lengths = {8, 32};
  probe.output_tokens = 4;
  probe.repeats = 1;
  return probe;
}

class BenchEndToEndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(testing::TempDir()) / ("loadgen_e2e_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    std::ofstream(*dir_ / "daemon.yaml")
        << "server:\n"
           "  synthetic_dir: synthetic\n"
           "  shutdown_grace_seconds: 2\n"
           "runtime:\n"
           "  backend: cpu\n"
           "  cpu_threads: 1\n"
           "kv_cache:\n"
           "  memory: 16MiB\n"
           "models:\n"
           "  - name: tiny-a\n"
           "    synthetic: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, "
           "seed: 1}\n"
           "  - name: tiny-b\n"
           "    synthetic: {layers: 1, hidden: 64, heads: 2, intermediate: 96, seed: 2}\n";
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start({.binary = BuildDir() / "src" / "apps" / "muxserved",
                              .config = *dir_ / "daemon.yaml",
                              .log = *dir_ / "muxserved.log",
                              .ready_file = *dir_ / "ready.json",
                              .startup_timeout_s = 120});
    if (daemon.ok()) {
      daemon_ = daemon->release();
      stub_ = pb::Muxserve::NewStub(Connect(daemon_->address())).release();
    } else {
      start_error_ = new absl::Status(daemon.status());
    }
  }

  static void TearDownTestSuite() {
    if (daemon_ != nullptr) {
      EXPECT_TRUE(daemon_->Stop(20).ok());
      delete daemon_;
      daemon_ = nullptr;
    }
    // The channel goes after the daemon, as in `muxserve experiment`: gRPC 1.51 (Debian) can
    // abort in its callback queue when a channel that carried cancelled calls is destroyed and
    // its server disconnects later, while the process goes on.
    delete stub_;
    stub_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
    fs::remove_all(*dir_);
    delete dir_;
  }

  void SetUp() override { ASSERT_EQ(start_error_, nullptr) << *start_error_; }

  static fs::path* dir_;
  static DaemonProcess* daemon_;
  static absl::Status* start_error_;
  static pb::Muxserve::Stub* stub_;
};

fs::path* BenchEndToEndTest::dir_ = nullptr;
DaemonProcess* BenchEndToEndTest::daemon_ = nullptr;
absl::Status* BenchEndToEndTest::start_error_ = nullptr;
pb::Muxserve::Stub* BenchEndToEndTest::stub_ = nullptr;

TEST_F(BenchEndToEndTest, EveryRequestIsAccountedForAndTheFilesAreWritten) {
  BenchOptions options;
  options.address = daemon_->address();
  options.workload.explicit_rates = "tiny-a=6,tiny-b=3";
  options.workload.arrival = {ArrivalKind::kGamma, 2.0};
  options.workload.lengths = "fixed:16,8";
  options.workload.duration_s = 3;
  options.probe = QuickProbes();
  options.out_dir = *dir_ / "bench";
  int progress_calls = 0;
  options.driver.progress_interval_s = 0.5;
  options.driver.on_progress = [&](const Progress& progress) {
    ++progress_calls;
    EXPECT_LE(progress.sent, progress.total);
  };
  absl::StatusOr<BenchResult> result = RunBench(options);
  ASSERT_TRUE(result.ok()) << result.status();

  const int64_t sent = static_cast<int64_t>(result->workload.requests.size());
  ASSERT_GT(sent, 5);
  ASSERT_EQ(static_cast<int64_t>(result->records.size()), sent);
  const ModelSummary& overall = result->summary.overall;
  EXPECT_EQ(overall.sent, sent);
  EXPECT_EQ(overall.finished + overall.errors + overall.aborted, sent);
  EXPECT_EQ(overall.errors, 0) << testing::PrintToString(result->summary.error_messages);
  EXPECT_EQ(overall.aborted, 0);
  for (const RequestRecord& record : result->records) {
    EXPECT_EQ(record.outcome, Outcome::kFinished) << record.error;
    EXPECT_EQ(record.output_tokens, 8);  // ignore_eos: exactly the drawn length
    EXPECT_EQ(record.prompt_tokens, 16);
    EXPECT_GE(record.first_token_s, record.arrival_s);
    EXPECT_GE(record.last_token_s, record.first_token_s);
  }
  EXPECT_GT(progress_calls, 2);
  ASSERT_EQ(result->summary.models.size(), 2u);
  EXPECT_EQ(result->summary.models[0].name, "tiny-a");
  EXPECT_EQ(result->summary.models[0].slo.size(), 20u);
  EXPECT_GT(result->summary.throughput_rps_sum, 0);
  EXPECT_EQ(result->base.size(), 2u);
  EXPECT_GT(result->base.at("tiny-a").tpot_s, 0);

  EXPECT_EQ(CountLines(options.out_dir / "requests.jsonl"), sent);
  EXPECT_EQ(CountLines(options.out_dir / "workload.jsonl"), sent);
  absl::StatusOr<nlohmann::json> summary = ReadJsonFile(options.out_dir / "summary.json");
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ((*summary)["overall"]["sent"], sent);
  EXPECT_EQ((*summary)["workload"]["lengths"], "fixed:16,8");
  absl::StatusOr<BaseLatencies> base = ReadBaseLatencies(options.out_dir / "slo_base.json");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_TRUE(base->contains("tiny-b"));

  // The written workload replays as a trace, with the base of the first run.
  BenchOptions replay = options;
  replay.workload = WorkloadSpec{};
  replay.workload.trace = options.out_dir / "workload.jsonl";
  replay.workload.max_requests = 4;
  replay.slo_base = (options.out_dir / "slo_base.json").string();
  replay.out_dir.clear();
  absl::StatusOr<BenchResult> again = RunBench(replay);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->summary.overall.finished, 4);
}

TEST_F(BenchEndToEndTest, ErrorsAreCountedWithTheirReason) {
  const std::vector<RequestSpec> requests = {SyntheticRequest(0.0, "tiny-a", {4, 2}),
                                             SyntheticRequest(0.05, "no-such-model", {4, 2})};
  const std::vector<RequestRecord> records = RunOpenLoop(*stub_, requests, DriverOptions{});
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].outcome, Outcome::kFinished) << records[0].error;
  EXPECT_EQ(records[1].outcome, Outcome::kError);
  EXPECT_THAT(records[1].error, HasSubstr("NOT_FOUND"));
}

TEST_F(BenchEndToEndTest, RequestsStillRunningAtTheDrainDeadlineAreCancelledAndCounted) {
  const std::vector<RequestSpec> requests = {SyntheticRequest(0.0, "tiny-a", {4, 1900})};
  DriverOptions options;
  options.drain_timeout_s = 0.2;
  const std::vector<RequestRecord> records = RunOpenLoop(*stub_, requests, options);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].outcome, Outcome::kAborted);
  EXPECT_THAT(records[0].error, HasSubstr("drain deadline"));
  EXPECT_LT(records[0].output_tokens, 1900);
}

TEST_F(BenchEndToEndTest, ServedModelsAreListedWithTheirContext) {
  absl::StatusOr<std::vector<ServedModel>> served = ListServingModels(*stub_);
  ASSERT_TRUE(served.ok()) << served.status();
  ASSERT_EQ(served->size(), 2u);
  EXPECT_EQ((*served)[0].name, "tiny-a");
  EXPECT_EQ((*served)[0].max_context, 2048);

  WorkloadSpec spec;
  spec.models = {"tiny-a", "missing"};
  spec.max_requests = 3;
  EXPECT_THAT(PrepareWorkload(spec, *served).status().message(),
              HasSubstr("model 'missing' is not served"));
  // Lengths beyond the context are cut to fit it.
  spec.models = {"tiny-b"};
  spec.lengths = "fixed:3000,100";
  absl::StatusOr<PreparedWorkload> clipped = PrepareWorkload(spec, *served);
  ASSERT_TRUE(clipped.ok()) << clipped.status();
  EXPECT_EQ(clipped->clipped, 3);
  EXPECT_EQ(clipped->requests[0].prompt_tokens, 2047);
  EXPECT_EQ(clipped->requests[0].output_tokens, 1);
}

// An experiment in a fresh folder `name` under the test's temp dir: one tiny CPU model, streams
// of one second of 8-token prompts and 4-token outputs, quick probes.
ExperimentOptions SmallExperiment(const std::string& name, std::vector<std::string> modes) {
  const fs::path dir = fs::path(testing::TempDir()) / (name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "daemon.yaml")
      << "server:\n"
         "  synthetic_dir: synthetic\n"
         "  shutdown_grace_seconds: 2\n"
         "runtime:\n"
         "  backend: cpu\n"
         "  cpu_threads: 1\n"
         "kv_cache:\n"
         "  memory: 8MiB\n"
         "models:\n"
         "  - name: small\n"
         "    synthetic: {layers: 1, hidden: 32, heads: 2, intermediate: 64, seed: 4}\n";
  ExperimentOptions options;
  options.config = dir / "daemon.yaml";
  options.modes = std::move(modes);
  options.daemon_binary = BuildDir() / "src" / "apps" / "muxserved";
  options.startup_timeout_s = 120;
  options.out_dir = dir / "out";
  options.bench.workload.lengths = "fixed:8,4";
  options.bench.workload.duration_s = 1;
  options.bench.probe = QuickProbes();
  return options;
}

TEST(ExperimentEndToEndTest, RunsTheSameStreamInEveryMode) {
  ExperimentOptions options = SmallExperiment("loadgen_experiment", {"muxserve", "temporal"});
  options.bench.workload.rate_scale = 4;
  absl::StatusOr<std::vector<ModeResult>> results = RunExperiment(options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  const int64_t requests = CountLines(options.out_dir / "workload.jsonl");
  ASSERT_GT(requests, 0);
  for (const ModeResult& result : *results) {
    EXPECT_EQ(result.summary.overall.sent, requests) << result.mode;
    EXPECT_EQ(result.summary.overall.finished, requests) << result.mode;
    EXPECT_TRUE(fs::exists(result.dir / "summary.json")) << result.mode;
    EXPECT_TRUE(fs::exists(result.dir / "muxserved.log")) << result.mode;
  }
  absl::StatusOr<nlohmann::json> comparison = ReadJsonFile(options.out_dir / "comparison.json");
  ASSERT_TRUE(comparison.ok()) << comparison.status();
  ASSERT_EQ((*comparison)["modes"].size(), 2u);
  EXPECT_EQ((*comparison)["modes"][1]["mode"], "temporal");
  fs::remove_all(options.out_dir.parent_path());
}

// Several loads: each mode's daemon starts once and serves every load; each load's stream is the
// same in every mode.
TEST(ExperimentEndToEndTest, ServesEveryLoadWithOneDaemonPerMode) {
  ExperimentOptions options =
      SmallExperiment("loadgen_experiment_loads", {"muxserve", "spatial"});
  absl::StatusOr<std::vector<LoadPoint>> loads = ParseLoads("2,6", /*trace=*/false);
  ASSERT_TRUE(loads.ok()) << loads.status();
  options.loads = *loads;
  absl::StatusOr<std::vector<ModeResult>> results = RunExperiment(options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 4u);
  const int64_t light = CountLines(options.out_dir / "workload_scale2.jsonl");
  const int64_t heavy = CountLines(options.out_dir / "workload_scale6.jsonl");
  ASSERT_GT(light, 0);
  EXPECT_GT(heavy, light);
  for (const ModeResult& result : *results) {
    EXPECT_EQ(result.summary.overall.sent, result.load == "scale2" ? light : heavy)
        << result.mode << " " << result.load;
    EXPECT_EQ(result.summary.overall.finished, result.summary.overall.sent) << result.mode;
    EXPECT_EQ(result.dir, options.out_dir / result.mode / result.load);
    EXPECT_TRUE(fs::exists(result.dir / "summary.json")) << result.mode << " " << result.load;
  }
  EXPECT_EQ((*results)[1].mode, "muxserve");
  EXPECT_EQ((*results)[1].load, "scale6");
  // One daemon per mode: its log beside the loads' folders.
  EXPECT_TRUE(fs::exists(options.out_dir / "muxserve" / "muxserved.log"));
  EXPECT_TRUE(fs::exists(options.out_dir / "spatial" / "muxserved.log"));
  absl::StatusOr<nlohmann::json> comparison = ReadJsonFile(options.out_dir / "comparison.json");
  ASSERT_TRUE(comparison.ok()) << comparison.status();
  ASSERT_EQ((*comparison)["loads"].size(), 2u);
  EXPECT_EQ((*comparison)["loads"][1]["load"], "scale6");
  ASSERT_EQ((*comparison)["loads"][1]["modes"].size(), 2u);
  EXPECT_EQ((*comparison)["loads"][1]["modes"][1]["mode"], "spatial");
  fs::remove_all(options.out_dir.parent_path());
}

}  // namespace
}  // namespace muxserve::loadgen
