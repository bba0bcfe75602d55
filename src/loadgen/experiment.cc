#include "muxserve/loadgen/experiment.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "muxserve/common/status.h"
#include "muxserve/config/config.h"
#include "muxserve/loadgen/daemon_process.h"
#include "muxserve/loadgen/report.h"
#include "muxserve/loadgen/trace.h"
#include "yaml-cpp/yaml.h"

namespace muxserve::loadgen {
namespace {

namespace pb = ::muxserve::v1;

constexpr const char* kModes[] = {"muxserve", "temporal", "spatial"};

// `path` made absolute against `base` when it is relative.
std::string Absolute(const std::filesystem::path& base, const std::string& path) {
  const std::filesystem::path p(path);
  return (p.is_absolute() ? p : base / p).lexically_normal().string();
}

absl::Status WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path.string(), "'"));
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing '", path.string(), "' failed"));
  return absl::OkStatus();
}

void Tell(const ExperimentOptions& options, const std::string& message) {
  if (options.on_status) options.on_status(message);
}

// The workload of `load` (the options' own when it is null).
WorkloadSpec LoadWorkload(const ExperimentOptions& options, const LoadPoint* load) {
  WorkloadSpec spec = options.bench.workload;
  if (load != nullptr && load->rate_scale > 0) spec.rate_scale = load->rate_scale;
  if (load != nullptr && load->trace_speedup > 0) spec.trace_speedup = load->trace_speedup;
  return spec;
}

// Starts the mode's daemon and replays every load against it. The first mode prepares the
// streams (kept in `workloads` for the others) and measures the base latencies.
absl::StatusOr<std::vector<ModeResult>> RunMode(const ExperimentOptions& options,
                                                const std::string& mode, bool first,
                                                std::vector<PreparedWorkload>* workloads,
                                                BaseLatencies* base) {
  const std::filesystem::path mode_dir = options.out_dir / mode;
  std::error_code error;
  std::filesystem::create_directories(mode_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", mode_dir.string(), "': ", error.message()));
  }
  const std::filesystem::path config = mode_dir / "daemon.yaml";
  RETURN_IF_ERROR(WriteConfigWithMode(options.config, mode, config));

  Tell(options, absl::StrCat(mode, ": starting muxserved (log: ",
                             (mode_dir / "muxserved.log").string(), ")"));
  DaemonLaunch launch{
      .binary = options.daemon_binary.empty() ? DaemonBesideSelf() : options.daemon_binary,
      .config = config,
      .log = mode_dir / "muxserved.log",
      .ready_file = mode_dir / "ready.json",
      .startup_timeout_s = options.startup_timeout_s};
  ASSIGN_OR_RETURN(std::unique_ptr<DaemonProcess> daemon, DaemonProcess::Start(launch));
  auto stub = pb::Muxserve::NewStub(Connect(daemon->address()));
  ASSIGN_OR_RETURN(const std::vector<ServedModel> served, ListServingModels(*stub));

  std::set<std::string> names;
  for (const ServedModel& model : served) names.insert(model.name);
  const size_t num_loads = std::max<size_t>(1, options.loads.size());
  std::vector<ModeResult> results;
  for (size_t i = 0; i < num_loads; ++i) {
    const LoadPoint* load = options.loads.empty() ? nullptr : &options.loads[i];
    const std::string label = load != nullptr ? load->label : "";
    const std::string named = load != nullptr ? absl::StrCat(mode, " ", label) : mode;
    if (first) {
      const std::filesystem::path stream =
          options.out_dir / (load != nullptr ? absl::StrCat("workload_", label, ".jsonl")
                                             : std::string("workload.jsonl"));
      ASSIGN_OR_RETURN(workloads->emplace_back(),
                       PrepareWorkload(LoadWorkload(options, load), served));
      RETURN_IF_ERROR(WriteTrace(stream, workloads->back().requests));
      Tell(options, absl::StrCat(named, ": ", workloads->back().requests.size(),
                                 " requests over ", workloads->back().rates.size(),
                                 " models written to ", stream.string()));
    }
    const PreparedWorkload& workload = (*workloads)[i];
    for (const auto& [model, rate] : workload.rates) {
      if (!names.contains(model)) {
        return absl::FailedPreconditionError(
            absl::StrCat(mode, ": model '", model, "' is not served in this mode"));
      }
    }
    if (first && i == 0) {
      auto on_model = [&](const std::string& model) {
        Tell(options, absl::StrCat(mode, ": measuring the base latency of ", model));
      };
      ASSIGN_OR_RETURN(*base, ObtainBaseLatencies(*stub, options.bench.slo_base, workload.rates,
                                                  served, options.bench.probe, on_model));
      RETURN_IF_ERROR(WriteJsonFile(options.out_dir / "slo_base.json", ToJson(*base)));
    }
    ModeResult result;
    result.mode = mode;
    result.load = label;
    result.dir = load != nullptr ? mode_dir / label : mode_dir;
    std::filesystem::create_directories(result.dir, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create '", result.dir.string(), "': ", error.message()));
    }
    Tell(options, absl::StrCat(named, ": replaying ", workload.requests.size(), " requests"));
    BenchOptions bench = options.bench;
    bench.address = daemon->address();
    ASSIGN_OR_RETURN(BenchResult run, RunPrepared(*stub, workload, *base, bench));
    RETURN_IF_ERROR(WriteBenchOutputs(result.dir, run, bench));
    result.summary = std::move(run.summary);
    results.push_back(std::move(result));
  }
  RETURN_IF_ERROR(Annotate(daemon->Stop(options.stop_timeout_s), mode));
  return results;
}

}  // namespace

absl::Status WriteConfigWithMode(const std::filesystem::path& source, std::string_view mode,
                                 const std::filesystem::path& destination) {
  std::error_code error;
  const std::filesystem::path folder = std::filesystem::absolute(source, error).parent_path();
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat(source.string(), ": cannot resolve its folder: ", error.message()));
  }
  std::string text;
  try {
    YAML::Node root = YAML::LoadFile(source.string());
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(source.string(), ": not a YAML map"));
    }
    root["scheduler"]["mode"] = std::string(mode);
    YAML::Node server = root["server"];
    server["synthetic_dir"] = server["synthetic_dir"]
                                  ? Absolute(folder, server["synthetic_dir"].as<std::string>())
                                  : (folder / ".cache" / "synthetic").string();
    if (root["models"] && root["models"].IsSequence()) {
      for (YAML::Node model : root["models"]) {
        if (model.IsMap() && model["path"]) {
          model["path"] = Absolute(folder, model["path"].as<std::string>());
        }
      }
    }
    YAML::Emitter out;
    out << root;
    text = std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& error) {
    return absl::InvalidArgumentError(absl::StrCat(source.string(), ": ", error.what()));
  }
  RETURN_IF_ERROR(WriteText(destination, text));
  return config::LoadConfig(destination).status();
}

absl::StatusOr<std::vector<std::string>> ParseModes(std::string_view text) {
  std::vector<std::string> modes;
  for (absl::string_view item : absl::StrSplit(AsAbsl(text), ',', absl::SkipWhitespace())) {
    const std::string mode(absl::StripAsciiWhitespace(item));
    if (std::find(std::begin(kModes), std::end(kModes), mode) == std::end(kModes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("mode '", mode, "': expected muxserve, temporal or spatial"));
    }
    if (std::find(modes.begin(), modes.end(), mode) != modes.end()) {
      return absl::InvalidArgumentError(absl::StrCat("mode '", mode, "' is given twice"));
    }
    modes.push_back(mode);
  }
  if (modes.empty()) return absl::InvalidArgumentError("modes: none given");
  return modes;
}

absl::StatusOr<std::vector<LoadPoint>> ParseLoads(std::string_view text, bool trace) {
  std::vector<LoadPoint> loads;
  for (absl::string_view item : absl::StrSplit(AsAbsl(text), ',', absl::SkipWhitespace())) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(item);
    double value = 0;
    if (!absl::SimpleAtod(stripped, &value) || !(value > 0) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          trace ? "trace speed-ups" : "rate scales", ": '", stripped, "' is not a number > 0"));
    }
    LoadPoint load;
    load.label = absl::StrCat(trace ? "speedup" : "scale", stripped);
    (trace ? load.trace_speedup : load.rate_scale) = value;
    for (const LoadPoint& other : loads) {
      if (other.label == load.label) {
        return absl::InvalidArgumentError(absl::StrCat("load '", stripped, "' is given twice"));
      }
    }
    loads.push_back(std::move(load));
  }
  if (loads.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(trace ? "trace speed-ups" : "rate scales", ": none given"));
  }
  return loads;
}

absl::StatusOr<std::vector<ModeResult>> RunExperiment(const ExperimentOptions& options) {
  if (options.modes.empty()) return absl::InvalidArgumentError("experiment: no modes");
  if (options.out_dir.empty()) return absl::InvalidArgumentError("experiment: no output folder");
  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", options.out_dir.string(), "': ", error.message()));
  }
  std::vector<PreparedWorkload> workloads;
  BaseLatencies base;
  std::vector<ModeResult> results;
  for (size_t i = 0; i < options.modes.size(); ++i) {
    ASSIGN_OR_RETURN(std::vector<ModeResult> mode_results,
                     RunMode(options, options.modes[i], i == 0, &workloads, &base));
    for (ModeResult& result : mode_results) results.push_back(std::move(result));
  }
  RETURN_IF_ERROR(WriteJsonFile(options.out_dir / "comparison.json", ComparisonJson(results)));
  return results;
}

std::vector<std::vector<ModeResult>> GroupByLoad(const std::vector<ModeResult>& results) {
  std::vector<std::vector<ModeResult>> groups;
  for (const ModeResult& first : results) {
    if (first.mode != results.front().mode) break;  // the first mode ran every load, in order
    std::vector<ModeResult>& group = groups.emplace_back();
    for (const ModeResult& result : results) {
      if (result.load == first.load) group.push_back(result);
    }
  }
  return groups;
}

nlohmann::json ComparisonJson(const std::vector<ModeResult>& results) {
  auto modes_json = [](const std::vector<ModeResult>& group) {
    nlohmann::json modes = nlohmann::json::array();
    for (const ModeResult& result : group) {
      modes.push_back({{"mode", result.mode},
                       {"dir", result.dir.string()},
                       {"summary", ToJson(result.summary)}});
    }
    return modes;
  };
  if (results.empty() || results.front().load.empty()) return {{"modes", modes_json(results)}};
  nlohmann::json loads = nlohmann::json::array();
  for (const std::vector<ModeResult>& group : GroupByLoad(results)) {
    loads.push_back({{"load", group.front().load}, {"modes", modes_json(group)}});
  }
  return {{"loads", loads}};
}

}  // namespace muxserve::loadgen
