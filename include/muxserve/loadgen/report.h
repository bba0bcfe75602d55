// The files a run writes: summaries and base latencies as JSON, one JSON line per request.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/loadgen/stats.h"
#include "nlohmann/json.hpp"

namespace muxserve::loadgen {

// NaN (no samples) becomes null.
nlohmann::json ToJson(const Distribution& distribution);
nlohmann::json ToJson(const ModelSummary& summary);
nlohmann::json ToJson(const RunSummary& summary);
nlohmann::json ToJson(const RequestRecord& record);

// {"model": {"ttft_points": [[prompt_tokens, seconds], ...], "tpot_s": s}, ...}
nlohmann::json ToJson(const BaseLatencies& base);
absl::StatusOr<BaseLatencies> BaseLatenciesFromJson(const nlohmann::json& json,
                                                    const std::string& origin);
absl::StatusOr<BaseLatencies> ReadBaseLatencies(const std::filesystem::path& path);

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::filesystem::path& path);
[[nodiscard]] absl::Status WriteJsonFile(const std::filesystem::path& path,
                                         const nlohmann::json& json);
[[nodiscard]] absl::Status WriteRecords(const std::filesystem::path& path,
                                        const std::vector<RequestRecord>& records);

}  // namespace muxserve::loadgen
