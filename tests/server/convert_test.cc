#include "muxserve/server/convert.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Status SamplingError(const v1::SamplingParams& params) {
  return ToEngineSampling(params).status();
}

TEST(ToEngineSampling, DefaultsMatchTheApi) {
  absl::StatusOr<engine::SamplingParams> sampling = ToEngineSampling(v1::SamplingParams());
  ASSERT_TRUE(sampling.ok()) << sampling.status();
  EXPECT_EQ(sampling->max_tokens, kDefaultMaxTokens);
  EXPECT_EQ(sampling->temperature, 1.0f);
  EXPECT_EQ(sampling->top_p, 1.0f);
  EXPECT_EQ(sampling->top_k, 0);
  EXPECT_FALSE(sampling->seed.has_value());
  EXPECT_FALSE(sampling->ignore_eos);
}

TEST(ToEngineSampling, CopiesEveryField) {
  v1::SamplingParams params;
  params.set_max_tokens(7);
  params.set_temperature(0.0f);
  params.set_top_p(0.5f);
  params.set_top_k(40);
  params.set_seed(1234);
  params.add_stop("\n\n");
  params.add_stop_token_ids(2);
  params.add_stop_token_ids(3);
  params.set_ignore_eos(true);
  absl::StatusOr<engine::SamplingParams> sampling = ToEngineSampling(params);
  ASSERT_TRUE(sampling.ok()) << sampling.status();
  EXPECT_EQ(sampling->max_tokens, 7);
  EXPECT_EQ(sampling->temperature, 0.0f);
  EXPECT_EQ(sampling->top_p, 0.5f);
  EXPECT_EQ(sampling->top_k, 40);
  EXPECT_EQ(sampling->seed, 1234u);
  EXPECT_THAT(sampling->stop, ElementsAre("\n\n"));
  EXPECT_THAT(sampling->stop_token_ids, ElementsAre(2, 3));
  EXPECT_TRUE(sampling->ignore_eos);
}

TEST(ToEngineSampling, RejectsBadValuesNamingTheField) {
  struct Case {
    void (*set)(v1::SamplingParams*);
    std::string field;
  };
  const Case cases[] = {
      {[](v1::SamplingParams* p) { p->set_max_tokens(-1); }, "sampling.max_tokens"},
      {[](v1::SamplingParams* p) { p->set_temperature(-0.5f); }, "sampling.temperature"},
      {[](v1::SamplingParams* p) { p->set_temperature(std::nanf("")); }, "sampling.temperature"},
      {[](v1::SamplingParams* p) { p->set_temperature(std::numeric_limits<float>::infinity()); },
       "sampling.temperature"},
      {[](v1::SamplingParams* p) { p->set_top_p(0.0f); }, "sampling.top_p"},
      {[](v1::SamplingParams* p) { p->set_top_p(1.5f); }, "sampling.top_p"},
      {[](v1::SamplingParams* p) { p->set_top_p(std::nanf("")); }, "sampling.top_p"},
      {[](v1::SamplingParams* p) { p->set_top_k(-3); }, "sampling.top_k"},
      {[](v1::SamplingParams* p) {
         p->add_stop("ok");
         p->add_stop("");
       },
       "sampling.stop[1]"},
  };
  for (const Case& c : cases) {
    v1::SamplingParams params;
    c.set(&params);
    absl::Status status = SamplingError(params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

TEST(CheckRequestId, LimitsTheLength) {
  EXPECT_TRUE(CheckRequestId("").ok());
  EXPECT_TRUE(CheckRequestId(std::string(kMaxRequestIdLength, 'x')).ok());
  absl::Status status = CheckRequestId(std::string(kMaxRequestIdLength + 1, 'x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("request_id"));
}

TEST(ToPromptTokens, ChecksEmptinessAndRange) {
  v1::TokenIds ids;
  EXPECT_THAT(ToPromptTokens(ids, 10).status().message(), HasSubstr("token_ids: empty"));
  ids.add_ids(1);
  ids.add_ids(9);
  absl::StatusOr<std::vector<int32_t>> tokens = ToPromptTokens(ids, 10);
  ASSERT_TRUE(tokens.ok());
  EXPECT_THAT(*tokens, ElementsAre(1, 9));
  ids.add_ids(10);
  absl::Status status = ToPromptTokens(ids, 10).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("token_ids.ids[2]"));
  ids.set_ids(2, -1);
  EXPECT_THAT(ToPromptTokens(ids, 10).status().message(), HasSubstr("token_ids.ids[2]"));
}

TEST(ToChatMessages, KeepsRolesAndOrder) {
  v1::ChatRequest request;
  auto* system = request.add_messages();
  system->set_role("system");
  system->set_content("be brief");
  auto* user = request.add_messages();
  user->set_role("user");
  user->set_content("hi");
  std::vector<model::ChatMessage> messages = ToChatMessages(request.messages());
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, "system");
  EXPECT_EQ(messages[0].content, "be brief");
  EXPECT_EQ(messages[1].role, "user");
  EXPECT_EQ(messages[1].content, "hi");
}

TEST(ToSteadyDeadline, KeepsTheRemainingTime) {
  const auto system_now = std::chrono::system_clock::now();
  const SteadyTime steady_now = SteadyTime(std::chrono::seconds(100));
  std::optional<SteadyTime> deadline =
      ToSteadyDeadline(system_now + std::chrono::milliseconds(250), system_now, steady_now);
  ASSERT_TRUE(deadline.has_value());
  EXPECT_EQ(*deadline - steady_now, std::chrono::milliseconds(250));
}

TEST(ToSteadyDeadline, APassedDeadlineStaysInThePast) {
  const auto system_now = std::chrono::system_clock::now();
  const SteadyTime steady_now = SteadyTime(std::chrono::seconds(100));
  std::optional<SteadyTime> deadline =
      ToSteadyDeadline(system_now - std::chrono::seconds(2), system_now, steady_now);
  ASSERT_TRUE(deadline.has_value());
  EXPECT_EQ(steady_now - *deadline, std::chrono::seconds(2));
}

TEST(ToSteadyDeadline, InfiniteIsNone) {
  const auto system_now = std::chrono::system_clock::now();
  EXPECT_FALSE(ToSteadyDeadline(std::chrono::system_clock::time_point::max(), system_now,
                                SteadyTime(std::chrono::seconds(1)))
                   .has_value());
}

TEST(ToApiFinishReason, MapsEveryReason) {
  EXPECT_EQ(ToApiFinishReason(engine::FinishReason::kStop), v1::STOP);
  EXPECT_EQ(ToApiFinishReason(engine::FinishReason::kLength), v1::LENGTH);
  EXPECT_EQ(ToApiFinishReason(engine::FinishReason::kAbort), v1::ABORT);
  EXPECT_EQ(ToApiFinishReason(engine::FinishReason::kError), v1::ERROR);
}

TEST(ToGrpcStatus, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status status = ToGrpcStatus(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "queue full");
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("x")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace
}  // namespace muxserve::server
