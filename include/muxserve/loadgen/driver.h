// The open-loop driver: sends every request of a stream at its arrival time, whatever the
// latency of the others, and records how each one went. One sender thread starts the calls;
// gRPC's callback API (one ClientReadReactor per request) reads all the streams on its own few
// threads, so thousands of concurrent requests need no thread each.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/loadgen/stats.h"
#include "muxserve/loadgen/workload.h"
#include "muxserve/v1/muxserve.grpc.pb.h"

namespace muxserve::loadgen {

// Synthetic prompts are token ids drawn uniformly from [min, max]: by default the byte tokens
// of the synthetic models' tokenizer (ids 0-255), leaving out the lowest ids.
struct TokenRange {
  int32_t min = 3;
  int32_t max = 250;
};
// "MIN,MAX" with 0 <= MIN <= MAX.
absl::StatusOr<TokenRange> ParseTokenRange(std::string_view text);

// The prompt of a request with a synthetic prompt: `length` ids from `range`, the same for the
// same (seed, index).
std::vector<int32_t> SyntheticPrompt(int32_t length, TokenRange range, uint64_t seed,
                                     int64_t index);

// The Generate call for `request`: text or synthetic token ids, max_tokens = output_tokens,
// ignore_eos, greedy.
v1::GenerateRequest MakeGenerateRequest(const RequestSpec& request, TokenRange range, uint64_t seed,
                                        int64_t index);

// A snapshot of a run, for the progress line.
struct Progress {
  double elapsed_s = 0;
  int64_t total = 0;
  int64_t sent = 0;
  int64_t finished = 0;
  int64_t errors = 0;
  int64_t aborted = 0;
  int64_t output_tokens = 0;  // received so far
  // Over the last progress interval.
  double send_rate = 0;    // requests per second
  double finish_rate = 0;  // requests per second
  double token_rate = 0;   // output tokens per second
  int64_t in_flight() const { return sent - finished - errors - aborted; }
};

struct DriverOptions {
  TokenRange token_range;
  uint64_t seed = 1;  // of the synthetic prompts' token ids
  // Per-call deadline in seconds from the scheduled arrival (0: none); a call past it ends as an
  // error (DEADLINE_EXCEEDED).
  double request_timeout_s = 0;
  // After the last request is sent, the run waits this long for the rest, then cancels them;
  // they are counted as aborted.
  double drain_timeout_s = 600;
  std::function<void(const Progress&)> on_progress;  // called from a thread of the driver
  double progress_interval_s = 1.0;
};

// Runs `requests` (sorted by arrival) against `stub`. Every request gets exactly one record, in
// the order of `requests`.
std::vector<RequestRecord> RunOpenLoop(v1::Muxserve::Stub& stub,
                                       const std::vector<RequestSpec>& requests,
                                       const DriverOptions& options);

// How the base latency of a model is measured: one request at a time, a warm-up first, each
// probe repeated and its median kept.
struct ProbeOptions {
  std::vector<int32_t> prompt_lengths = {16, 64, 256, 1024};
  int32_t output_tokens = 32;
  int repeats = 3;
  TokenRange token_range;
  double timeout_s = 120;  // per probe request
};

// The isolated batch-1 latency of `model`: TTFT at each prompt length that fits `max_context`
// (with the probe's output), and the median time per output token over all probes.
absl::StatusOr<BaseLatency> MeasureBaseLatency(v1::Muxserve::Stub& stub, const std::string& model,
                                               int64_t max_context, const ProbeOptions& options);

}  // namespace muxserve::loadgen
