// AccessControl on its own: which tokens authenticate, which models a token reaches, the
// per-client stream limit, the request limits, and that no status ever carries a secret.
#include "muxserve/server/access_control.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kFullSecret[] = "full-secret-9c2e71aa";
constexpr char kLimitedSecret[] = "limited-secret-4b8d03f6";
constexpr char kPeer[] = "ipv4:10.1.2.3:45678";

config::AuthConfig TwoTokens() {
  config::AuthConfig auth;
  auth.tokens.push_back({.name = "full", .secret = kFullSecret, .models = {}});
  auth.tokens.push_back({.name = "limited", .secret = kLimitedSecret, .models = {"tiny-a"}});
  return auth;
}

config::LimitsConfig StreamLimit(int64_t streams) {
  config::LimitsConfig limits;
  limits.max_streams_per_client = streams;
  return limits;
}

std::string Bearer(const std::string& secret) { return "Bearer " + secret; }

// Neither configured secret appears in the status's message.
void ExpectNoSecret(const absl::Status& status) {
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr(kFullSecret)));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr(kLimitedSecret)));
}

TEST(AccessControlTest, WithoutTokensEveryCallerIsItsPeerHost) {
  AccessControl access({}, {});
  EXPECT_FALSE(access.requires_token());
  absl::StatusOr<Caller> caller = access.Authenticate("", kPeer);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "ipv4:10.1.2.3");
  EXPECT_TRUE(caller->MayUse("any-model"));
  // A token sent to a daemon without tokens is ignored, not refused.
  EXPECT_TRUE(access.Authenticate(Bearer("whatever"), kPeer).ok());
}

TEST(AccessControlTest, MissingTokenIsUnauthenticated) {
  AccessControl access(TwoTokens(), {});
  EXPECT_TRUE(access.requires_token());
  absl::StatusOr<Caller> caller = access.Authenticate("", kPeer);
  EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(caller.status().message()), HasSubstr("Bearer"));
}

TEST(AccessControlTest, WrongOrMalformedTokenIsUnauthenticatedWithoutEchoingIt) {
  AccessControl access(TwoTokens(), {});
  const std::string near_miss = std::string(kFullSecret) + "x";
  for (const std::string& authorization :
       {Bearer("nope"), Bearer(near_miss), Bearer(std::string(kFullSecret).substr(1)),
        "Basic " + std::string(kFullSecret), std::string(kFullSecret), std::string("Bearer "),
        std::string("Bearer    ")}) {
    absl::StatusOr<Caller> caller = access.Authenticate(authorization, kPeer);
    EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated) << authorization;
    ExpectNoSecret(caller.status());
    EXPECT_THAT(std::string(caller.status().message()), Not(HasSubstr(near_miss)));
  }
}

TEST(AccessControlTest, RightTokenNamesItsCaller) {
  AccessControl access(TwoTokens(), {});
  absl::StatusOr<Caller> full = access.Authenticate(Bearer(kFullSecret), kPeer);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->name, "full");
  EXPECT_TRUE(full->models.empty());

  // The scheme is case-insensitive and whitespace around the token does not count.
  absl::StatusOr<Caller> limited =
      access.Authenticate("bearer  " + std::string(kLimitedSecret) + " ", kPeer);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_EQ(limited->name, "limited");
  EXPECT_EQ(limited->models, std::vector<std::string>{"tiny-a"});
}

TEST(AccessControlTest, LimitedTokenIsDeniedOtherModels) {
  AccessControl access(TwoTokens(), {});
  absl::StatusOr<Caller> limited = access.Authenticate(Bearer(kLimitedSecret), kPeer);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_TRUE(access.CheckModel(*limited, "tiny-a").ok());

  const absl::Status denied = access.CheckModel(*limited, "tiny-b");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.message()), HasSubstr("limited"));
  EXPECT_THAT(std::string(denied.message()), HasSubstr("tiny-b"));
  ExpectNoSecret(denied);

  absl::StatusOr<Caller> full = access.Authenticate(Bearer(kFullSecret), kPeer);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_TRUE(access.CheckModel(*full, "tiny-b").ok());
}

TEST(AccessControlTest, StreamsPerClientAreCountedPerCaller) {
  AccessControl access(TwoTokens(), StreamLimit(2));
  const Caller limited = *access.Authenticate(Bearer(kLimitedSecret), kPeer);
  const Caller full = *access.Authenticate(Bearer(kFullSecret), kPeer);

  std::vector<std::shared_ptr<AccessControl::StreamSlot>> open;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> slot = access.AcquireStream(limited);
    ASSERT_TRUE(slot.ok()) << slot.status();
    open.push_back(*std::move(slot));
  }
  absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> third = access.AcquireStream(limited);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("limits.max_streams_per_client"));
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("'limited'"));
  ExpectNoSecret(third.status());
  // Another client has its own share.
  EXPECT_TRUE(access.AcquireStream(full).ok());

  // Released explicitly or by destruction, a slot is free again; releasing twice frees one.
  open[0]->Release();
  open[0]->Release();
  absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> again = access.AcquireStream(limited);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(access.AcquireStream(limited).ok());
  open.clear();
  again->reset();
  EXPECT_TRUE(access.AcquireStream(limited).ok());
}

TEST(AccessControlTest, SlotOutlivingItsAccessControlReleasesSafely) {
  std::shared_ptr<AccessControl::StreamSlot> slot;
  {
    AccessControl access({}, StreamLimit(1));
    slot = *access.AcquireStream(*access.Authenticate("", kPeer));
  }
  slot.reset();  // must not touch the destroyed AccessControl
}

TEST(AccessControlTest, NoStreamLimitMeansUnlimited) {
  AccessControl access({}, StreamLimit(0));
  const Caller caller = *access.Authenticate("", kPeer);
  std::vector<std::shared_ptr<AccessControl::StreamSlot>> open;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> slot = access.AcquireStream(caller);
    ASSERT_TRUE(slot.ok()) << slot.status();
    open.push_back(*std::move(slot));
  }
}

TEST(AccessControlTest, ConcurrentAcquiresNeverExceedTheLimit) {
  constexpr int kLimit = 3;
  constexpr int kThreads = 8;
  AccessControl access({}, StreamLimit(kLimit));
  const Caller caller = *access.Authenticate("", kPeer);
  std::vector<std::vector<std::shared_ptr<AccessControl::StreamSlot>>> held(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<std::shared_ptr<AccessControl::StreamSlot>> slot =
            access.AcquireStream(caller);
        if (slot.ok()) held[t].push_back(*std::move(slot));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  size_t total = 0;
  for (const auto& slots : held) total += slots.size();
  EXPECT_EQ(total, static_cast<size_t>(kLimit));
}

TEST(AccessControlTest, RequestLimitsNameTheirKey) {
  config::LimitsConfig limits;
  limits.max_stop_strings = 2;
  limits.max_prompt_tokens = 10;
  AccessControl access({}, limits);
  EXPECT_TRUE(access.CheckStopStrings(2).ok());
  const absl::Status stops = access.CheckStopStrings(3);
  EXPECT_EQ(stops.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(stops.message()), HasSubstr("limits.max_stop_strings"));
  EXPECT_TRUE(access.CheckPromptTokens(10).ok());
  const absl::Status prompt = access.CheckPromptTokens(11);
  EXPECT_EQ(prompt.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(prompt.message()), HasSubstr("limits.max_prompt_tokens"));

  // 0 turns a limit off.
  AccessControl unlimited({}, {.max_message_bytes = 0,
                               .max_prompt_tokens = 0,
                               .max_stop_strings = 0,
                               .max_streams_per_client = 0});
  EXPECT_TRUE(unlimited.CheckStopStrings(1000).ok());
  EXPECT_TRUE(unlimited.CheckPromptTokens(1'000'000).ok());
}

TEST(AccessControlTest, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  // A prefix padded with NULs is still a different string.
  EXPECT_FALSE(ConstantTimeEquals(std::string("ab\0", 3), "ab"));
}

TEST(AccessControlTest, PeerHostDropsThePortOnly) {
  EXPECT_EQ(PeerHost("ipv4:127.0.0.1:5000"), "ipv4:127.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5000"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("unix:/tmp/socket"), "unix:/tmp/socket");
  EXPECT_EQ(PeerHost("nocolon"), "nocolon");
}

}  // namespace
}  // namespace muxserve::server
