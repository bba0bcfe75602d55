#include "muxserve/loadgen/report.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve::loadgen {
namespace {

using nlohmann::json;

json Number(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

absl::Status BaseError(const std::string& origin, const std::string& key, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": key '", key, "': ", AsAbsl(what)));
}

}  // namespace

json ToJson(const Distribution& d) {
  return {{"count", d.count},     {"mean", Number(d.mean)}, {"p50", Number(d.p50)},
          {"p90", Number(d.p90)}, {"p99", Number(d.p99)},   {"max", Number(d.max)}};
}

json ToJson(const ModelSummary& s) {
  json slo = json::array();
  for (const SloPoint& point : s.slo) slo.push_back({point.scale, point.attainment});
  return {{"name", s.name},
          {"rate", s.rate},
          {"sent", s.sent},
          {"finished", s.finished},
          {"errors", s.errors},
          {"aborted", s.aborted},
          {"prompt_tokens", s.prompt_tokens},
          {"output_tokens", s.output_tokens},
          {"last_completion_s", s.last_completion_s},
          {"throughput_rps", s.throughput_rps},
          {"throughput_tps", s.throughput_tps},
          {"ttft_s", ToJson(s.ttft_s)},
          {"tpot_s", ToJson(s.tpot_s)},
          {"e2e_s", ToJson(s.e2e_s)},
          {"slo_attainment", slo}};
}

json ToJson(const RunSummary& s) {
  json models = json::array();
  for (const ModelSummary& model : s.models) models.push_back(ToJson(model));
  return {{"models", models},
          {"overall", ToJson(s.overall)},
          {"throughput_rps_sum", s.throughput_rps_sum},
          {"throughput_rps_weighted", s.throughput_rps_weighted},
          {"throughput_tps_sum", s.throughput_tps_sum},
          {"throughput_tps_weighted", s.throughput_tps_weighted},
          {"duration_s", s.duration_s},
          {"max_send_lag_s", s.max_send_lag_s},
          {"error_messages", s.error_messages}};
}

json ToJson(const RequestRecord& r) {
  json record = {{"index", r.index},
                 {"model", r.model},
                 {"outcome", std::string(OutcomeName(r.outcome))},
                 {"arrival_s", r.arrival_s},
                 {"send_s", r.send_s},
                 {"done_s", r.done_s},
                 {"prompt_tokens", r.prompt_tokens},
                 {"output_tokens_requested", r.output_tokens_requested},
                 {"output_tokens", r.output_tokens}};
  if (r.output_tokens > 0) {
    record["ttft_s"] = r.ttft_s();
    record["e2e_s"] = r.e2e_s();
  }
  if (r.output_tokens > 1) record["tpot_s"] = r.tpot_s();
  if (!r.error.empty()) record["error"] = r.error;
  return record;
}

json ToJson(const BaseLatencies& base) {
  json object = json::object();
  for (const auto& [model, latency] : base) {
    json points = json::array();
    for (const auto& [prompt, seconds] : latency.ttft_points) points.push_back({prompt, seconds});
    object[model] = {{"ttft_points", points}, {"tpot_s", latency.tpot_s}};
  }
  return object;
}

absl::StatusOr<BaseLatencies> BaseLatenciesFromJson(const json& json_base,
                                                    const std::string& origin) {
  if (!json_base.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected an object of models to base latencies"));
  }
  BaseLatencies base;
  for (const auto& [model, entry] : json_base.items()) {
    if (!entry.is_object() || !entry.contains("ttft_points") || !entry.contains("tpot_s")) {
      return BaseError(origin, model, "expected {\"ttft_points\": [...], \"tpot_s\": seconds}");
    }
    BaseLatency latency;
    if (!entry["tpot_s"].is_number() || entry["tpot_s"].get<double>() < 0) {
      return BaseError(origin, model + ".tpot_s", "expected a number of seconds >= 0");
    }
    latency.tpot_s = entry["tpot_s"].get<double>();
    const json& points = entry["ttft_points"];
    if (!points.is_array() || points.empty()) {
      return BaseError(origin, model + ".ttft_points", "expected a non-empty array");
    }
    for (size_t i = 0; i < points.size(); ++i) {
      const json& point = points[i];
      if (!point.is_array() || point.size() != 2 || !point[0].is_number_integer() ||
          !point[1].is_number() || point[1].get<double>() < 0) {
        return BaseError(origin, absl::StrCat(model, ".ttft_points[", i, "]"),
                         "expected [prompt_tokens, seconds]");
      }
      const int32_t prompt = point[0].get<int32_t>();
      if (!latency.ttft_points.empty() && prompt <= latency.ttft_points.back().first) {
        return BaseError(origin, absl::StrCat(model, ".ttft_points[", i, "]"),
                         "prompt lengths must increase");
      }
      latency.ttft_points.emplace_back(prompt, point[1].get<double>());
    }
    base[model] = std::move(latency);
  }
  return base;
}

absl::StatusOr<json> ReadJsonFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path.string(), "'"));
  std::ostringstream content;
  content << in.rdbuf();
  json parsed = json::parse(content.str(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  }
  return parsed;
}

absl::StatusOr<BaseLatencies> ReadBaseLatencies(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(const json parsed, ReadJsonFile(path));
  return BaseLatenciesFromJson(parsed, path.string());
}

absl::Status WriteJsonFile(const std::filesystem::path& path, const json& json_value) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path.string(), "'"));
  out << json_value.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing '", path.string(), "' failed"));
  return absl::OkStatus();
}

absl::Status WriteRecords(const std::filesystem::path& path,
                          const std::vector<RequestRecord>& records) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path.string(), "'"));
  for (const RequestRecord& record : records) {
    out << ToJson(record).dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing '", path.string(), "' failed"));
  return absl::OkStatus();
}

}  // namespace muxserve::loadgen
