// One benchmark run against a running muxserved: list the models, build the request stream,
// measure (or load) each model's base latency, replay the stream open-loop, summarize, and write
// DIR/summary.json, DIR/requests.jsonl, DIR/workload.jsonl and DIR/slo_base.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/loadgen/driver.h"
#include "muxserve/loadgen/stats.h"
#include "muxserve/loadgen/workload.h"
#include "muxserve/v1/muxserve.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace muxserve::loadgen {

// The default length of a generated workload when neither a duration nor a count is given.
inline constexpr double kDefaultDurationSeconds = 60;

struct ServedModel {
  std::string name;
  int64_t max_context = 0;
};

// The models ListModels reports SERVING, in its order.
absl::StatusOr<std::vector<ServedModel>> ListServingModels(v1::Muxserve::Stub& stub);

// What to send. A trace replays its own arrivals, models and lengths; otherwise the stream is
// generated from the rates, the arrival process and the length distribution.
struct WorkloadSpec {
  std::vector<std::string> models;  // rank order; empty: every served model (trace: all of it)
  std::string explicit_rates;       // "m1=2,m2=0.5"; empty: power law
  double alpha = 0.9;
  double rate_scale = 1.0;  // the most popular model's rate, requests per second
  ArrivalOptions arrival;
  std::string lengths = "sharegpt";  // LengthSampler::Parse
  std::filesystem::path trace;       // replay this JSONL trace
  double trace_speedup = 1;          // the trace's arrivals divided by this (CompressTrace)
  // 0 and 0: kDefaultDurationSeconds for a generated stream, the whole trace for a replay.
  double duration_s = 0;
  int64_t max_requests = 0;
  uint64_t seed = 1;
};

struct PreparedWorkload {
  std::vector<RequestSpec> requests;
  std::vector<std::pair<std::string, double>> rates;  // offered requests per second, rank order
  int64_t clipped = 0;  // requests shortened to fit their model's context
  nlohmann::json description;
};

// Builds the stream. With `served` non-empty, every model must be served and lengths are cut to
// fit each model's context (prompt <= max_context - 1, prompt + output <= max_context); with
// `served` empty (a dry run) models must be named and nothing is cut.
absl::StatusOr<PreparedWorkload> PrepareWorkload(const WorkloadSpec& spec,
                                                 const std::vector<ServedModel>& served);

struct BenchOptions {
  std::string address = "127.0.0.1:50051";
  WorkloadSpec workload;
  std::string slo_base = "measure";  // "measure", or a slo_base.json of an earlier run
  ProbeOptions probe;
  DriverOptions driver;
  std::vector<double> slo_scales = DefaultSloScales();
  std::filesystem::path out_dir;  // empty: write nothing
  // Hears of each model before its base latency is measured (may be empty).
  std::function<void(const std::string& model)> on_base_model;
};

struct BenchResult {
  PreparedWorkload workload;
  BaseLatencies base;
  std::vector<RequestRecord> records;
  RunSummary summary;
};

// The base latencies of every model of `rates`: measured, or read from a file that must hold
// them all. `on_model` (may be empty) hears of each model before it is measured.
absl::StatusOr<BaseLatencies> ObtainBaseLatencies(
    v1::Muxserve::Stub& stub, const std::string& slo_base,
    const std::vector<std::pair<std::string, double>>& rates,
    const std::vector<ServedModel>& served, const ProbeOptions& probe,
    const std::function<void(const std::string&)>& on_model);

// Replays a prepared workload and summarizes it.
absl::StatusOr<BenchResult> RunPrepared(v1::Muxserve::Stub& stub, PreparedWorkload workload,
                                        BaseLatencies base, const BenchOptions& options);

// Connects to options.address and does everything, writing the files when out_dir is set.
absl::StatusOr<BenchResult> RunBench(const BenchOptions& options);
// The same over a channel of the caller's (bearer token, TLS); options.address only names it.
absl::StatusOr<BenchResult> RunBenchOn(std::shared_ptr<grpc::Channel> channel,
                                       const BenchOptions& options);

[[nodiscard]] absl::Status WriteBenchOutputs(const std::filesystem::path& dir,
                                             const BenchResult& result,
                                             const BenchOptions& options);

std::shared_ptr<grpc::Channel> Connect(const std::string& address);

}  // namespace muxserve::loadgen
