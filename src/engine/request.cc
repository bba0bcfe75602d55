#include <cmath>

#include "absl/strings/str_cat.h"
#include "muxserve/engine/unit_engine.h"

namespace muxserve::engine {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

absl::Status ValidateRequest(const Request& request, const model::ModelSpec& spec,
                             int64_t max_context) {
  const SamplingParams& s = request.sampling;
  const int64_t prompt = static_cast<int64_t>(request.prompt_tokens.size());
  if (prompt == 0) return absl::InvalidArgumentError("prompt: the prompt is empty");
  for (size_t i = 0; i < request.prompt_tokens.size(); ++i) {
    const int32_t id = request.prompt_tokens[i];
    if (id < 0 || id >= spec.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt.token_ids[", i, "]: token id ", id,
                                                     " is outside the vocabulary [0, ",
                                                     spec.vocab_size, ")"));
    }
  }
  if (prompt >= max_context) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", prompt,
                                                   " tokens do not fit the context of ",
                                                   max_context, " tokens"));
  }
  if (s.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens: must be at least 1, got ", s.max_tokens));
  }
  if (prompt + s.max_tokens > max_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling.max_tokens: prompt (", prompt, " tokens) + max_tokens (", s.max_tokens,
        ") exceeds the context of ", max_context, " tokens"));
  }
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature: must be finite and >= 0, got ", s.temperature));
  }
  if (!(s.top_p > 0 && s.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p: must be in (0, 1], got ", s.top_p));
  }
  if (s.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k: must be >= 0 (0 means no limit), got ", s.top_k));
  }
  for (size_t i = 0; i < s.stop_token_ids.size(); ++i) {
    if (s.stop_token_ids[i] < 0 || s.stop_token_ids[i] >= spec.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.stop_token_ids[", i, "]: ",
                                                     s.stop_token_ids[i],
                                                     " is outside the vocabulary"));
    }
  }
  for (size_t i = 0; i < s.stop.size(); ++i) {
    if (s.stop[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.stop[", i, "]: empty string"));
    }
  }
  return absl::OkStatus();
}

}  // namespace muxserve::engine
