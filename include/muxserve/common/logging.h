// Logging setup: spdlog with one default logger for the whole process.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace muxserve {

// Sets the global level from a name (trace, debug, info, warn, error, off).
[[nodiscard]] absl::Status SetLogLevel(std::string_view level);

}  // namespace muxserve
