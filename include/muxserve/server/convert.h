// Conversions between the muxserve.v1 API and the engine's types, with the request checks that
// need no model. Errors are INVALID_ARGUMENT naming the request field.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "muxserve/common/clock.h"
#include "muxserve/engine/request.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/v1/muxserve.pb.h"

namespace muxserve::server {

inline constexpr int32_t kDefaultMaxTokens = 16;
inline constexpr size_t kMaxRequestIdLength = 256;

// Checks the API's sampling values (temperature finite and >= 0, top_p in (0, 1], top_k >= 0,
// max_tokens >= 0 with 0 meaning kDefaultMaxTokens, no empty stop string) and converts them.
absl::StatusOr<engine::SamplingParams> ToEngineSampling(const v1::SamplingParams& params);

// A client's request id: at most kMaxRequestIdLength bytes (empty asks the server for one).
absl::Status CheckRequestId(const std::string& request_id);

// Prompt token ids given by the client: not empty and inside [0, vocab_size).
absl::StatusOr<std::vector<int32_t>> ToPromptTokens(const v1::TokenIds& token_ids,
                                                    int32_t vocab_size);

std::vector<model::ChatMessage> ToChatMessages(
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages);

// The client's deadline (system clock, as gRPC gives it) on the engine's steady clock. gRPC
// reports "no deadline" as a time point far in the future: those give nullopt.
std::optional<SteadyTime> ToSteadyDeadline(std::chrono::system_clock::time_point deadline,
                                           std::chrono::system_clock::time_point system_now,
                                           SteadyTime steady_now);

v1::FinishReason ToApiFinishReason(engine::FinishReason reason);

// absl and gRPC share the canonical status codes.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace muxserve::server
