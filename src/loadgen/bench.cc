#include "muxserve/loadgen/bench.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "muxserve/common/status.h"
#include "muxserve/loadgen/report.h"
#include "muxserve/loadgen/trace.h"

namespace muxserve::loadgen {
namespace {

namespace pb = ::muxserve::v1;
using nlohmann::json;

constexpr std::chrono::seconds kListDeadline{10};

const ServedModel* FindServed(const std::vector<ServedModel>& served, const std::string& name) {
  for (const ServedModel& model : served) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

std::string ServedNames(const std::vector<ServedModel>& served) {
  std::vector<std::string> names;
  for (const ServedModel& model : served) names.push_back(model.name);
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

// Cuts a synthetic prompt and its output to fit a context of `max_context` tokens.
bool ClipToContext(int64_t max_context, RequestSpec* request) {
  if (!request->prompt_text.empty() || max_context < 2) return false;
  const int32_t context = static_cast<int32_t>(std::min<int64_t>(max_context, INT32_MAX));
  bool clipped = false;
  if (request->prompt_tokens > context - 1) {
    request->prompt_tokens = context - 1;
    clipped = true;
  }
  if (request->output_tokens > context - request->prompt_tokens) {
    request->output_tokens = context - request->prompt_tokens;
    clipped = true;
  }
  return clipped;
}

absl::StatusOr<PreparedWorkload> PrepareTraceReplay(const WorkloadSpec& spec) {
  ASSIGN_OR_RETURN(std::vector<RequestSpec> trace, ReadTrace(spec.trace));
  if (spec.trace_speedup != 1) {
    ASSIGN_OR_RETURN(trace, CompressTrace(std::move(trace), spec.trace_speedup));
  }
  if (!spec.models.empty()) {
    const std::set<std::string> keep(spec.models.begin(), spec.models.end());
    std::erase_if(trace, [&](const RequestSpec& r) { return !keep.contains(r.model); });
  }
  if (spec.duration_s > 0) {
    std::erase_if(trace, [&](const RequestSpec& r) { return r.arrival_s >= spec.duration_s; });
  }
  if (spec.max_requests > 0 && static_cast<int64_t>(trace.size()) > spec.max_requests) {
    trace.resize(spec.max_requests);
  }
  if (trace.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("trace '", spec.trace.string(), "': no request left to send"));
  }
  PreparedWorkload prepared;
  const std::map<std::string, double> rates = TraceRates(trace);
  // Rank order: the busiest model first.
  for (const auto& [model, rate] : rates) prepared.rates.emplace_back(model, rate);
  std::stable_sort(prepared.rates.begin(), prepared.rates.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  prepared.requests = std::move(trace);
  prepared.description = {
      {"kind", "trace"}, {"trace", spec.trace.string()}, {"speedup", spec.trace_speedup}};
  return prepared;
}

absl::StatusOr<PreparedWorkload> PrepareGenerated(const WorkloadSpec& spec,
                                                  const std::vector<ServedModel>& served) {
  WorkloadOptions options;
  options.arrival = spec.arrival;
  options.seed = spec.seed;
  options.duration_s = spec.duration_s;
  options.max_requests = spec.max_requests;
  if (options.duration_s <= 0 && options.max_requests <= 0) {
    options.duration_s = kDefaultDurationSeconds;
  }
  ASSIGN_OR_RETURN(options.lengths, LengthSampler::Parse(spec.lengths));

  std::vector<std::pair<std::string, double>> rates;
  if (!spec.explicit_rates.empty()) {
    ASSIGN_OR_RETURN(rates, ParseExplicitRates(spec.explicit_rates));
    if (!spec.models.empty()) {
      std::set<std::string> listed(spec.models.begin(), spec.models.end());
      for (const auto& [model, rate] : rates) {
        if (!listed.contains(model)) {
          return absl::InvalidArgumentError(
              absl::StrCat("rates: model '", model, "' is not among the models asked for"));
        }
      }
    }
  } else {
    std::vector<std::string> models = spec.models;
    if (models.empty()) {
      for (const ServedModel& model : served) models.push_back(model.name);
    }
    if (models.empty()) {
      return absl::InvalidArgumentError("no models: name them, or let the server list them");
    }
    if (!(spec.alpha >= 0) || !(spec.rate_scale > 0)) {
      return absl::InvalidArgumentError("power-law rates need alpha >= 0 and a rate scale > 0");
    }
    const std::vector<double> values = PowerLawRates(models.size(), spec.alpha, spec.rate_scale);
    for (size_t i = 0; i < models.size(); ++i) rates.emplace_back(models[i], values[i]);
  }
  for (const auto& [model, rate] : rates) {
    options.models.push_back(model);
    options.rates.push_back(rate);
  }
  PreparedWorkload prepared;
  ASSIGN_OR_RETURN(prepared.requests, GenerateWorkload(options));
  prepared.rates = std::move(rates);
  prepared.description = {{"kind", "generated"},
                          {"arrival", std::string(ArrivalKindName(spec.arrival.kind))},
                          {"cv", spec.arrival.kind == ArrivalKind::kGamma ? spec.arrival.cv : 1.0},
                          {"lengths", options.lengths.Describe()},
                          {"duration_s", options.duration_s},
                          {"max_requests", options.max_requests},
                          {"seed", spec.seed}};
  if (spec.explicit_rates.empty()) {
    prepared.description["alpha"] = spec.alpha;
    prepared.description["rate_scale"] = spec.rate_scale;
  }
  return prepared;
}

}  // namespace

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

absl::StatusOr<std::vector<ServedModel>> ListServingModels(pb::Muxserve::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kListDeadline);
  pb::ListModelsResponse response;
  const grpc::Status status = stub.ListModels(&context, pb::ListModelsRequest(), &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("ListModels: ", status.error_message()));
  }
  std::vector<ServedModel> served;
  for (const pb::ModelInfo& model : response.models()) {
    if (model.state() == pb::ModelInfo::SERVING) {
      served.push_back({model.name(), model.max_context()});
    }
  }
  return served;
}

absl::StatusOr<PreparedWorkload> PrepareWorkload(const WorkloadSpec& spec,
                                                 const std::vector<ServedModel>& served) {
  PreparedWorkload prepared;
  if (!spec.trace.empty()) {
    ASSIGN_OR_RETURN(prepared, PrepareTraceReplay(spec));
  } else {
    ASSIGN_OR_RETURN(prepared, PrepareGenerated(spec, served));
  }
  if (served.empty()) {
    if (prepared.requests.empty()) return absl::InvalidArgumentError("the workload is empty");
    return prepared;
  }
  for (const auto& [model, rate] : prepared.rates) {
    if (FindServed(served, model) == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", model, "' is not served (serving: ", ServedNames(served), ")"));
    }
  }
  for (RequestSpec& request : prepared.requests) {
    if (ClipToContext(FindServed(served, request.model)->max_context, &request)) {
      ++prepared.clipped;
    }
  }
  if (prepared.requests.empty()) {
    return absl::InvalidArgumentError("the workload is empty: raise the rates or the duration");
  }
  prepared.description["requests"] = prepared.requests.size();
  prepared.description["clipped_to_context"] = prepared.clipped;
  json rates = json::array();
  for (const auto& [model, rate] : prepared.rates)
    rates.push_back({{"model", model}, {"rate", rate}});
  prepared.description["rates"] = rates;
  return prepared;
}

absl::StatusOr<BaseLatencies> ObtainBaseLatencies(
    pb::Muxserve::Stub& stub, const std::string& slo_base,
    const std::vector<std::pair<std::string, double>>& rates,
    const std::vector<ServedModel>& served, const ProbeOptions& probe,
    const std::function<void(const std::string&)>& on_model) {
  BaseLatencies base;
  if (slo_base != "measure") {
    ASSIGN_OR_RETURN(base, ReadBaseLatencies(slo_base));
    for (const auto& [model, rate] : rates) {
      if (!base.contains(model)) {
        return absl::InvalidArgumentError(
            absl::StrCat(slo_base, ": no base latency for model '", model, "'"));
      }
    }
    return base;
  }
  for (const auto& [model, rate] : rates) {
    const ServedModel* served_model = FindServed(served, model);
    if (served_model == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("model '", model, "' is not served"));
    }
    if (on_model) on_model(model);
    ASSIGN_OR_RETURN(base[model],
                     MeasureBaseLatency(stub, model, served_model->max_context, probe));
  }
  return base;
}

absl::StatusOr<BenchResult> RunPrepared(pb::Muxserve::Stub& stub, PreparedWorkload workload,
                                        BaseLatencies base, const BenchOptions& options) {
  BenchResult result;
  result.records = RunOpenLoop(stub, workload.requests, options.driver);
  ASSIGN_OR_RETURN(result.summary,
                   Summarize(result.records, workload.rates, base, options.slo_scales));
  result.workload = std::move(workload);
  result.base = std::move(base);
  return result;
}

absl::StatusOr<BenchResult> RunBench(const BenchOptions& options) {
  return RunBenchOn(Connect(options.address), options);
}

absl::StatusOr<BenchResult> RunBenchOn(std::shared_ptr<grpc::Channel> channel,
                                       const BenchOptions& options) {
  auto stub = pb::Muxserve::NewStub(std::move(channel));
  ASSIGN_OR_RETURN(const std::vector<ServedModel> served, ListServingModels(*stub));
  if (served.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no model is SERVING at ", options.address));
  }
  ASSIGN_OR_RETURN(PreparedWorkload workload, PrepareWorkload(options.workload, served));
  ASSIGN_OR_RETURN(BaseLatencies base,
                   ObtainBaseLatencies(*stub, options.slo_base, workload.rates, served,
                                       options.probe, options.on_base_model));
  ASSIGN_OR_RETURN(BenchResult result,
                   RunPrepared(*stub, std::move(workload), std::move(base), options));
  if (!options.out_dir.empty()) {
    RETURN_IF_ERROR(WriteBenchOutputs(options.out_dir, result, options));
  }
  return result;
}

absl::Status WriteBenchOutputs(const std::filesystem::path& dir, const BenchResult& result,
                               const BenchOptions& options) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", dir.string(), "': ", error.message()));
  }
  json summary = ToJson(result.summary);
  summary["address"] = options.address;
  summary["workload"] = result.workload.description;
  summary["slo_base"] = options.slo_base;
  summary["base_latency"] = ToJson(result.base);
  RETURN_IF_ERROR(WriteJsonFile(dir / "summary.json", summary));
  RETURN_IF_ERROR(WriteRecords(dir / "requests.jsonl", result.records));
  RETURN_IF_ERROR(WriteTrace(dir / "workload.jsonl", result.workload.requests));
  return WriteJsonFile(dir / "slo_base.json", ToJson(result.base));
}

}  // namespace muxserve::loadgen
