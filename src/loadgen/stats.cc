#include "muxserve/loadgen/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace muxserve::loadgen {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Accumulator {
  ModelSummary summary;
  std::vector<double> ttft;
  std::vector<double> tpot;
  std::vector<double> e2e;
  std::vector<int64_t> within;  // requests within each SLO scale
  bool has_base = true;

  void Add(const RequestRecord& record, const BaseLatency* base,
           const std::vector<double>& scales) {
    ++summary.sent;
    switch (record.outcome) {
      case Outcome::kError:
        ++summary.errors;
        return;
      case Outcome::kAborted:
        ++summary.aborted;
        return;
      case Outcome::kFinished:
        break;
    }
    ++summary.finished;
    summary.prompt_tokens += record.prompt_tokens;
    summary.output_tokens += record.output_tokens;
    summary.last_completion_s = std::max(summary.last_completion_s, record.done_s);
    if (record.output_tokens < 1) return;  // a finished stream without tokens has no latencies
    ttft.push_back(record.ttft_s());
    e2e.push_back(record.e2e_s());
    if (record.output_tokens >= 2) tpot.push_back(record.tpot_s());
    if (base == nullptr) return;
    const double budget = base->Predict(record.prompt_tokens, record.output_tokens);
    for (size_t i = 0; i < scales.size(); ++i) {
      if (record.e2e_s() <= scales[i] * budget) ++within[i];
    }
  }

  ModelSummary Finish(const std::vector<double>& scales) {
    if (summary.last_completion_s > 0) {
      summary.throughput_rps = summary.finished / summary.last_completion_s;
      summary.throughput_tps = summary.output_tokens / summary.last_completion_s;
    }
    summary.ttft_s = Describe(ttft);
    summary.tpot_s = Describe(tpot);
    summary.e2e_s = Describe(e2e);
    if (has_base) {
      for (size_t i = 0; i < scales.size(); ++i) {
        summary.slo.push_back(
            {scales[i], summary.sent > 0 ? static_cast<double>(within[i]) / summary.sent : 0.0});
      }
    }
    return summary;
  }
};

}  // namespace

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return kNaN;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + fraction * (values[above] - values[below]);
}

Distribution Describe(const std::vector<double>& values) {
  Distribution d;
  d.count = static_cast<int64_t>(values.size());
  if (values.empty()) {
    d.mean = d.p50 = d.p90 = d.p99 = d.max = kNaN;
    return d;
  }
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.p50 = Percentile(values, 50);
  d.p90 = Percentile(values, 90);
  d.p99 = Percentile(values, 99);
  d.max = *std::max_element(values.begin(), values.end());
  return d;
}

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kFinished:
      return "finished";
    case Outcome::kError:
      return "error";
    case Outcome::kAborted:
      return "aborted";
  }
  return "error";
}

double BaseLatency::Ttft(int32_t prompt_tokens) const {
  if (ttft_points.empty()) return 0;
  if (ttft_points.size() == 1) return ttft_points.front().second;
  // The segment that holds the prompt length, or the first or last one to extend.
  size_t right = 1;
  while (right + 1 < ttft_points.size() && ttft_points[right].first < prompt_tokens) ++right;
  const auto [x0, y0] = ttft_points[right - 1];
  const auto [x1, y1] = ttft_points[right];
  const double slope = x1 == x0 ? 0.0 : (y1 - y0) / (x1 - x0);
  return std::max(0.0, y0 + slope * (prompt_tokens - x0));
}

double BaseLatency::Predict(int32_t prompt_tokens, int32_t output_tokens) const {
  return Ttft(prompt_tokens) + std::max(0, output_tokens - 1) * tpot_s;
}

std::vector<double> DefaultSloScales(int max_scale) {
  std::vector<double> scales;
  for (int s = 1; s <= max_scale; ++s) scales.push_back(s);
  return scales;
}

absl::StatusOr<RunSummary> Summarize(const std::vector<RequestRecord>& records,
                                     const std::vector<std::pair<std::string, double>>& rates,
                                     const BaseLatencies& base,
                                     const std::vector<double>& slo_scales) {
  std::map<std::string, size_t> position;
  std::vector<Accumulator> models(rates.size());
  Accumulator overall;
  overall.within.assign(slo_scales.size(), 0);
  for (size_t i = 0; i < rates.size(); ++i) {
    position[rates[i].first] = i;
    models[i].summary.name = rates[i].first;
    models[i].summary.rate = rates[i].second;
    models[i].within.assign(slo_scales.size(), 0);
    models[i].has_base = base.contains(rates[i].first);
    overall.has_base = overall.has_base && models[i].has_base;
    overall.summary.rate += rates[i].second;
  }
  overall.summary.name = "overall";

  RunSummary summary;
  for (const RequestRecord& record : records) {
    const auto found = position.find(record.model);
    if (found == position.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", record.index, ": model '", record.model, "' has no rate"));
    }
    const auto base_entry = base.find(record.model);
    const BaseLatency* model_base = base_entry == base.end() ? nullptr : &base_entry->second;
    models[found->second].Add(record, model_base, slo_scales);
    overall.Add(record, model_base, slo_scales);
    summary.max_send_lag_s = std::max(summary.max_send_lag_s, record.send_s - record.arrival_s);
    if (record.outcome != Outcome::kFinished) ++summary.error_messages[record.error];
  }

  double rate_sum = 0;
  for (Accumulator& model : models) {
    ModelSummary done = model.Finish(slo_scales);
    summary.throughput_rps_sum += done.throughput_rps;
    summary.throughput_tps_sum += done.throughput_tps;
    summary.throughput_rps_weighted += done.rate * done.throughput_rps;
    summary.throughput_tps_weighted += done.rate * done.throughput_tps;
    rate_sum += done.rate;
    summary.models.push_back(std::move(done));
  }
  if (rate_sum > 0) {
    summary.throughput_rps_weighted /= rate_sum;
    summary.throughput_tps_weighted /= rate_sum;
  }
  summary.overall = overall.Finish(slo_scales);
  summary.duration_s = summary.overall.last_completion_s;
  return summary;
}

}  // namespace muxserve::loadgen
