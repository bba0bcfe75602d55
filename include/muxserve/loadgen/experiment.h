// The experiment runner: the same config served in each scheduling mode (muxserve, temporal,
// spatial), the same request stream replayed against each, one comparison at the end.
//
// DIR/workload.jsonl and DIR/slo_base.json: the stream and the base latencies every mode shares
// (the base is measured once, on the first mode's daemon, unless a file is given);
// DIR/<mode>/: daemon.yaml, muxserved.log and the run's files (summary.json, requests.jsonl);
// DIR/comparison.json: every mode's summary side by side.
// With several loads (rate scales of a generated stream, speed-ups of a trace) each mode's daemon
// starts once and serves every load in turn: DIR/workload_<load>.jsonl, the run's files in
// DIR/<mode>/<load>/, and DIR/comparison.json holds every load's modes.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/loadgen/bench.h"
#include "nlohmann/json.hpp"

namespace muxserve::loadgen {

// Writes a copy of the YAML config `source` to `destination` with scheduler.mode set to `mode`,
// and its relative paths (server.synthetic_dir, models[].path) made absolute against `source`'s
// folder, so the copy finds the same models wherever it lies. The copy is validated by the
// config loader before it is used.
[[nodiscard]] absl::Status WriteConfigWithMode(const std::filesystem::path& source,
                                               std::string_view mode,
                                               const std::filesystem::path& destination);

// "muxserve,temporal,spatial": known modes, none twice.
absl::StatusOr<std::vector<std::string>> ParseModes(std::string_view text);

// One load of an experiment: the stream of options.bench.workload at another rate scale
// (generated) or compressed by another factor (a trace).
struct LoadPoint {
  std::string label;  // names its files: "scale40", "speedup2"
  double rate_scale = 0;     // > 0: a generated stream's rate scale
  double trace_speedup = 0;  // > 0: a trace's compression factor
};

// Load points for "20,40,80" as rate scales ("scale20", ...) or, with `trace`, as trace
// speed-ups ("speedup2", ...): positive numbers, none twice.
absl::StatusOr<std::vector<LoadPoint>> ParseLoads(std::string_view text, bool trace);

struct ExperimentOptions {
  std::filesystem::path config;
  std::vector<std::string> modes = {"muxserve", "temporal", "spatial"};
  std::filesystem::path daemon_binary;  // empty: the muxserved beside this executable
  double startup_timeout_s = 300;
  double stop_timeout_s = 60;
  BenchOptions bench;  // its address and out_dir are ignored
  std::vector<LoadPoint> loads;  // empty: the one stream of `bench.workload`
  std::filesystem::path out_dir;
  std::function<void(const std::string& message)> on_status;  // what the runner is doing
};

struct ModeResult {
  std::string mode;
  std::string load;  // the load point's label; empty with a single stream
  std::filesystem::path dir;
  RunSummary summary;
};

// Results by mode, then by load in the order given.
absl::StatusOr<std::vector<ModeResult>> RunExperiment(const ExperimentOptions& options);

// The results of each load, its modes in the order they ran; loads in the order the first mode
// ran them (a single stream is one group).
std::vector<std::vector<ModeResult>> GroupByLoad(const std::vector<ModeResult>& results);

// {"modes": [{"mode": m, "summary": {...}}, ...]}, written as DIR/comparison.json; with load
// points {"loads": [{"load": label, "modes": [...]}, ...]}.
nlohmann::json ComparisonJson(const std::vector<ModeResult>& results);

}  // namespace muxserve::loadgen
