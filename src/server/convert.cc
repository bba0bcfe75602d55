#include "muxserve/server/convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace muxserve::server {
namespace {

// Deadlines further away than this are gRPC's "infinite" (and would overflow the steady clock).
constexpr auto kNoDeadlineBeyond = std::chrono::hours(24 * 365 * 10);

}  // namespace

absl::StatusOr<engine::SamplingParams> ToEngineSampling(const v1::SamplingParams& params) {
  engine::SamplingParams sampling;
  if (params.max_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens: must be >= 0, got ", params.max_tokens()));
  }
  sampling.max_tokens = params.max_tokens() == 0 ? kDefaultMaxTokens : params.max_tokens();
  if (params.has_temperature()) {
    if (!std::isfinite(params.temperature()) || params.temperature() < 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampling.temperature: must be finite and >= 0, got ", params.temperature()));
    }
    sampling.temperature = params.temperature();
  }
  if (params.has_top_p()) {
    // NaN fails both comparisons, so test for the valid range.
    if (!(params.top_p() > 0.0f && params.top_p() <= 1.0f)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.top_p: must be in (0, 1], got ", params.top_p()));
    }
    sampling.top_p = params.top_p();
  }
  if (params.top_k() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k: must be >= 0, got ", params.top_k()));
  }
  sampling.top_k = params.top_k();
  if (params.has_seed()) sampling.seed = params.seed();
  for (int i = 0; i < params.stop_size(); ++i) {
    if (params.stop(i).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.stop[", i, "]: empty string"));
    }
    sampling.stop.push_back(params.stop(i));
  }
  sampling.stop_token_ids.assign(params.stop_token_ids().begin(), params.stop_token_ids().end());
  sampling.ignore_eos = params.ignore_eos();
  return sampling;
}

absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.size() > kMaxRequestIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: ", request_id.size(), " bytes, at most ", kMaxRequestIdLength));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ToPromptTokens(const v1::TokenIds& token_ids,
                                                    int32_t vocab_size) {
  if (token_ids.ids().empty()) return absl::InvalidArgumentError("token_ids: empty prompt");
  for (int i = 0; i < token_ids.ids_size(); ++i) {
    const int32_t id = token_ids.ids(i);
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token_ids.ids[", i, "]: ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return std::vector<int32_t>(token_ids.ids().begin(), token_ids.ids().end());
}

std::vector<model::ChatMessage> ToChatMessages(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages) {
  std::vector<model::ChatMessage> converted;
  converted.reserve(messages.size());
  for (const v1::ChatMessage& message : messages) {
    converted.push_back({message.role(), message.content()});
  }
  return converted;
}

std::optional<SteadyTime> ToSteadyDeadline(std::chrono::system_clock::time_point deadline,
                                           std::chrono::system_clock::time_point system_now,
                                           SteadyTime steady_now) {
  if (deadline > system_now && deadline - system_now > kNoDeadlineBeyond) return std::nullopt;
  return steady_now + std::chrono::duration_cast<Duration>(deadline - system_now);
}

v1::FinishReason ToApiFinishReason(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop:
      return v1::STOP;
    case engine::FinishReason::kLength:
      return v1::LENGTH;
    case engine::FinishReason::kAbort:
      return v1::ABORT;
    case engine::FinishReason::kError:
      return v1::ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace muxserve::server
