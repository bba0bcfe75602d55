// Status helpers shared by every module: absl::Status crosses module boundaries, never exceptions.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define MUXSERVE_CONCAT_INNER(a, b) a##b
#define MUXSERVE_CONCAT(a, b) MUXSERVE_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` yields a non-OK absl::Status.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status muxserve_status_ = (expr);            \
    if (!muxserve_status_.ok()) return muxserve_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr());` unwraps a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  MUXSERVE_ASSIGN_OR_RETURN_IMPL(MUXSERVE_CONCAT(muxserve_statusor_, __LINE__), lhs, expr)
#define MUXSERVE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

namespace muxserve {

// Debian's Abseil keeps its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW is 0), which
// does not convert from std::string_view: pass strings to Abseil through this.
inline absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Prefixes a status message with context ("loading model x: ..."), keeping its code.
inline absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(AsAbsl(context), ": ", status.message()));
}

}  // namespace muxserve
