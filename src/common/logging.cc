#include "muxserve/common/logging.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve {

absl::Status SetLogLevel(std::string_view level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  // spdlog maps unknown names to "off"; only accept "off" when it was asked for.
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level '", AsAbsl(level), "' (trace, debug, info, warn, error, off)"));
  }
  spdlog::set_level(parsed);
  return absl::OkStatus();
}

}  // namespace muxserve
