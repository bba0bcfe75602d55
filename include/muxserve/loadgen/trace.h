// Request traces as JSONL files, time compression, and a generator of ChatLMSYS-like traces.
//
// One JSON object a line, in any order of lines (they are sorted by arrival on reading):
//   {"arrival_s": 12.5, "model": "llm-0", "prompt_tokens": 87, "output_tokens": 240}
//   {"arrival_s": 13.0, "model": "llm-3", "prompt": "Hello", "output_tokens": 16}
// arrival_s: seconds from the start; prompt_tokens: the length of a synthetic token-id prompt;
// prompt: text sent as it is (prompt_tokens is then optional and informational);
// output_tokens: generated with ignore_eos. Empty lines are skipped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/loadgen/workload.h"

namespace muxserve::loadgen {

// Errors name the file, the line and the field.
absl::StatusOr<std::vector<RequestSpec>> ReadTrace(const std::filesystem::path& path);
absl::StatusOr<std::vector<RequestSpec>> ParseTrace(const std::string& text,
                                                    const std::string& origin);
[[nodiscard]] absl::Status WriteTrace(const std::filesystem::path& path,
                                      const std::vector<RequestSpec>& requests);

// Divides every arrival time by `factor` (MuxServe's "condense"): factor 2 halves the duration
// and doubles every rate.
absl::StatusOr<std::vector<RequestSpec>> CompressTrace(std::vector<RequestSpec> requests,
                                                       double factor);

// Requests per second of each model over the trace's span (the last arrival; requests / span), the
// rates a replay offers. A trace of one instant (span 0) gives each model its request count.
std::map<std::string, double> TraceRates(const std::vector<RequestSpec>& requests);

// A ChatLMSYS-like trace on the raw (uncompressed) timeline of MuxServe's window of the
// ChatLMSYS log; compress it by MuxServe's condense factors (500 to 2000) to replay it.
struct ChatLmsysOptions {
  std::vector<std::string> models;   // in rank order (the first is the most popular)
  int64_t expected_requests = 4089;  // the request count of MuxServe's result files
  double window_s = 43200;           // days 55 to 55.5 of the log: 12 hours
  // Popularity: model k (from 1) gets a share proportional to k^-alpha. 0.65 makes the busiest
  // of 16 models about 3x the mean, as MuxServe's max per-LLM vs average rates suggest.
  double alpha = 0.65;
  // The rate of every model follows 1 - amplitude * cos(2 pi t / window): one swing of the
  // day over the window, quiet at its ends and busiest in its middle.
  double amplitude = 0.5;
  // Burstiness: the gaps are Gamma with this coefficient of variation in the time-rescaled
  // process (1: a non-homogeneous Poisson process).
  double cv = 2.0;
  LengthSampler lengths{ChatLmsysLikeLengths()};
  uint64_t seed = 1;
};

absl::StatusOr<std::vector<RequestSpec>> GenerateChatLmsysTrace(const ChatLmsysOptions& options);

}  // namespace muxserve::loadgen
