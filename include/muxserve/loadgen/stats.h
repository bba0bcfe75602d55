// What a run measured: one record per request, and the per-model and overall summaries the
// MuxServe paper reports (throughput both ways, latency percentiles, SLO attainment).
// docs/loadgen.md defines every number.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace muxserve::loadgen {

// The q-th percentile (q in [0, 100]) with linear interpolation between the closest ranks, as
// numpy.percentile's default: rank q/100 * (n - 1) of the sorted values. NaN when empty.
double Percentile(std::vector<double> values, double q);

struct Distribution {
  int64_t count = 0;
  double mean = 0;  // all NaN when count is 0
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};
Distribution Describe(const std::vector<double>& values);

enum class Outcome {
  kFinished,  // the stream ended with finish reason STOP or LENGTH
  kError,     // an RPC error, finish reason ERROR, or a stream without its final message
  kAborted,   // finish reason ABORT, or cancelled by the load generator at the drain deadline
};
std::string_view OutcomeName(Outcome outcome);

// One request as sent and answered. Times are seconds from the start of the run; the latencies
// count from the scheduled arrival, so a late send (the client falling behind) shows in them.
struct RequestRecord {
  int64_t index = 0;  // position in the request stream
  std::string model;
  double arrival_s = 0;       // scheduled
  double send_s = 0;          // when the call was started
  double first_token_s = -1;  // -1: no token arrived
  double last_token_s = -1;
  double done_s = 0;          // when the stream ended
  int32_t prompt_tokens = 0;  // as the server counted them (usage), else as sent
  int32_t output_tokens_requested = 0;
  int32_t output_tokens = 0;  // tokens received
  Outcome outcome = Outcome::kError;
  std::string error;  // why, for errors and aborts

  double ttft_s() const { return first_token_s - arrival_s; }
  double e2e_s() const { return last_token_s - arrival_s; }
  // Mean time between output tokens; needs two tokens or more.
  double tpot_s() const { return (last_token_s - first_token_s) / (output_tokens - 1); }
};

// One model's latency alone at batch 1: time to the first token as a function of the prompt
// length (piecewise linear through measured points, extended linearly beyond them) and the
// time per further output token.
struct BaseLatency {
  std::vector<std::pair<int32_t, double>> ttft_points;  // (prompt tokens, seconds), ascending
  double tpot_s = 0;

  double Ttft(int32_t prompt_tokens) const;
  // The isolated end-to-end latency: Ttft(prompt) + (output - 1) * tpot.
  double Predict(int32_t prompt_tokens, int32_t output_tokens) const;
};
using BaseLatencies = std::map<std::string, BaseLatency>;

struct SloPoint {
  double scale = 0;
  double attainment = 0;  // share of the requests sent, in [0, 1]
};

struct ModelSummary {
  std::string name;
  double rate = 0;  // offered requests per second (lambda_m)
  int64_t sent = 0;
  int64_t finished = 0;
  int64_t errors = 0;
  int64_t aborted = 0;
  int64_t prompt_tokens = 0;  // of finished requests
  int64_t output_tokens = 0;  // of finished requests
  double last_completion_s = 0;
  double throughput_rps = 0;  // finished / last_completion_s (MuxServe's per-LLM throughput)
  double throughput_tps = 0;  // output tokens / last_completion_s
  Distribution ttft_s;
  Distribution tpot_s;
  Distribution e2e_s;
  std::vector<SloPoint> slo;  // empty without a base latency
};

struct RunSummary {
  std::vector<ModelSummary> models;  // in the order of the rates given
  ModelSummary overall;              // every request together; its rate is the offered total
  // Sum over models of throughput (plain) and sum of rate * throughput / sum of rates
  // (MuxServe's aggregate).
  double throughput_rps_sum = 0;
  double throughput_rps_weighted = 0;
  double throughput_tps_sum = 0;
  double throughput_tps_weighted = 0;
  double duration_s = 0;      // the last completion of all
  double max_send_lag_s = 0;  // the latest a request was sent after its scheduled arrival
  std::map<std::string, int64_t> error_messages;  // distinct error texts and their counts
};

// SLO scales 1, 2, ..., max_scale.
std::vector<double> DefaultSloScales(int max_scale = 20);

// Summarizes `records`. `rates` lists the models in order with their offered rates; a record of
// a model not listed is an error. A model without a base latency gets no SLO curve.
absl::StatusOr<RunSummary> Summarize(const std::vector<RequestRecord>& records,
                                     const std::vector<std::pair<std::string, double>>& rates,
                                     const BaseLatencies& base,
                                     const std::vector<double>& slo_scales);

}  // namespace muxserve::loadgen
