#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/config/config.h"

namespace muxserve::config {
namespace {

struct SizeUnit {
  std::string_view name;  // lower case
  int64_t bytes;
};

constexpr SizeUnit kSizeUnits[] = {
    {"", 1},
    {"b", 1},
    {"kb", 1'000},
    {"mb", 1'000'000},
    {"gb", 1'000'000'000},
    {"tb", 1'000'000'000'000},
    {"kib", int64_t{1} << 10},
    {"mib", int64_t{1} << 20},
    {"gib", int64_t{1} << 30},
    {"tib", int64_t{1} << 40},
};

absl::Status NotASize(std::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat(
      "expected bytes or a size like \"256MiB\", \"2GiB\", \"512MB\", got '", AsAbsl(text), "'"));
}

absl::Status TooLarge(std::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat("size '", AsAbsl(text), "' is too large"));
}

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  std::string trimmed(absl::StripAsciiWhitespace(AsAbsl(text)));
  size_t number_end = 0;
  while (number_end < trimmed.size() &&
         (absl::ascii_isdigit(static_cast<unsigned char>(trimmed[number_end])) ||
          trimmed[number_end] == '.')) {
    ++number_end;
  }
  if (number_end == 0) {
    if (!trimmed.empty() && trimmed[0] == '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("a size cannot be negative, got '", AsAbsl(text), "'"));
    }
    return NotASize(text);
  }
  const std::string number = trimmed.substr(0, number_end);
  const std::string unit = absl::AsciiStrToLower(
      absl::StripLeadingAsciiWhitespace(absl::string_view(trimmed).substr(number_end)));

  const SizeUnit* found = nullptr;
  for (const SizeUnit& candidate : kSizeUnits) {
    if (candidate.name == unit) found = &candidate;
  }
  if (found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown unit '", unit, "' in '", AsAbsl(text),
                                                   "' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"));
  }

  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (number.find('.') == std::string::npos) {
    int64_t count = 0;
    if (!absl::SimpleAtoi(number, &count) || count > kMax / found->bytes) {
      return TooLarge(text);
    }
    return count * found->bytes;
  }
  double count = 0;
  if (!absl::SimpleAtod(number, &count)) return NotASize(text);
  const double bytes = std::round(count * static_cast<double>(found->bytes));
  // 2^63 is exactly representable; anything at or above it does not fit.
  if (!(bytes < 9223372036854775808.0)) return TooLarge(text);
  return static_cast<int64_t>(bytes);
}

}  // namespace muxserve::config
