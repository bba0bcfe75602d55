// Scrapes a Prometheus endpoint over a plain socket and parses the text exposition format.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace muxserve::integration {

// The body of `GET path` on 127.0.0.1:port (HTTP/1.0, so the body is never chunked).
// Errors on connection failures or a status other than 200.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

struct MetricSample {
  std::string name;  // e.g. "muxserve_generation_tokens_total", "..._bucket"
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct MetricsPage {
  std::vector<MetricSample> samples;
  std::map<std::string, std::string> types;  // family name -> "counter", "histogram", ...

  // The sample named `name` whose labels include all of `labels`; nullopt when none is.
  std::optional<double> Find(const std::string& name,
                             const std::map<std::string, std::string>& labels) const;
};

// Parses the Prometheus text format (version 0.0.4). INVALID_ARGUMENT names a bad line.
absl::StatusOr<MetricsPage> ParseMetrics(const std::string& text);

}  // namespace muxserve::integration
