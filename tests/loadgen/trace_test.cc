// Trace files (round trip, errors with file:line:field), time compression, and the
// ChatLMSYS-like generator's count, popularity and daily shape.
#include "muxserve/loadgen/trace.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/loadgen/bench.h"

namespace muxserve::loadgen {
namespace {

using ::testing::HasSubstr;

std::filesystem::path TempPath(const std::string& name) {
  return std::filesystem::path(testing::TempDir()) / name;
}

TEST(TraceTest, RoundTripsThroughJsonl) {
  std::vector<RequestSpec> requests = {SyntheticRequest(0.25, "a", {12, 34}),
                                       SyntheticRequest(1.5, "b", {56, 78})};
  RequestSpec text = SyntheticRequest(2.0, "a", {0, 9});
  text.prompt_text = "Hello \"world\"\n";
  requests.push_back(text);
  const std::filesystem::path path = TempPath("round_trip.jsonl");
  ASSERT_TRUE(WriteTrace(path, requests).ok());
  absl::StatusOr<std::vector<RequestSpec>> back = ReadTrace(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ((*back)[i].arrival_s, requests[i].arrival_s);
    EXPECT_EQ((*back)[i].model, requests[i].model);
    EXPECT_EQ((*back)[i].prompt_tokens, requests[i].prompt_tokens);
    EXPECT_EQ((*back)[i].prompt_text, requests[i].prompt_text);
    EXPECT_EQ((*back)[i].output_tokens, requests[i].output_tokens);
  }
}

TEST(TraceTest, SortsByArrivalAndSkipsBlankLines) {
  absl::StatusOr<std::vector<RequestSpec>> trace =
      ParseTrace(R"({"arrival_s": 2, "model": "b", "prompt_tokens": 1, "output_tokens": 1})"
                 "\n\n"
                 R"({"arrival_s": 1, "model": "a", "prompt": "hi", "output_tokens": 3})"
                 "\n",
                 "t.jsonl");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->size(), 2u);
  EXPECT_EQ((*trace)[0].model, "a");
  EXPECT_EQ((*trace)[0].prompt_text, "hi");
  EXPECT_EQ((*trace)[1].model, "b");
}

TEST(TraceTest, ErrorsNameTheFileLineAndField) {
  const std::string good =
      R"({"arrival_s": 0, "model": "a", "prompt_tokens": 4, "output_tokens": 4})";
  struct Case {
    std::string line;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"{not json", "t.jsonl:2: not valid JSON"},
      {"[1, 2]", "t.jsonl:2: expected a JSON object"},
      {R"({"model": "a", "prompt_tokens": 4, "output_tokens": 4})", "t.jsonl:2: field 'arrival_s'"},
      {R"({"arrival_s": -1, "model": "a", "prompt_tokens": 4, "output_tokens": 4})",
       "field 'arrival_s'"},
      {R"({"arrival_s": 0, "model": "", "prompt_tokens": 4, "output_tokens": 4})", "field 'model'"},
      {R"({"arrival_s": 0, "model": "a", "output_tokens": 4})", "set 'prompt_tokens' or 'prompt'"},
      {R"({"arrival_s": 0, "model": "a", "prompt_tokens": 0, "output_tokens": 4})",
       "field 'prompt_tokens': expected an integer >= 1, got 0"},
      {R"({"arrival_s": 0, "model": "a", "prompt_tokens": 4})", "field 'output_tokens' is missing"},
      {R"({"arrival_s": 0, "model": "a", "prompt_tokens": 4, "output_tokens": 2.5})",
       "field 'output_tokens'"},
      {R"({"arrival": 0, "model": "a", "prompt_tokens": 4, "output_tokens": 4})",
       "unknown field 'arrival'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<RequestSpec>> trace = ParseTrace(good + "\n" + c.line, "t.jsonl");
    EXPECT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(trace.status().message(), HasSubstr(c.message)) << c.line;
  }
  EXPECT_EQ(ReadTrace(TempPath("missing.jsonl")).status().code(), absl::StatusCode::kNotFound);
}

TEST(TraceTest, CompressionDividesArrivalTimes) {
  std::vector<RequestSpec> trace = {SyntheticRequest(10, "a", {1, 1}),
                                    SyntheticRequest(30, "b", {1, 1})};
  absl::StatusOr<std::vector<RequestSpec>> fast = CompressTrace(trace, 4);
  ASSERT_TRUE(fast.ok());
  EXPECT_DOUBLE_EQ((*fast)[0].arrival_s, 2.5);
  EXPECT_DOUBLE_EQ((*fast)[1].arrival_s, 7.5);
  EXPECT_FALSE(CompressTrace(trace, 0).ok());
  EXPECT_FALSE(CompressTrace(trace, -2).ok());
  // Rates scale with the factor.
  EXPECT_DOUBLE_EQ(TraceRates(trace).at("a"), 1.0 / 30);
  EXPECT_DOUBLE_EQ(TraceRates(*fast).at("a"), 4.0 / 30);
}

// A replay's speed-up compresses the trace before its duration cut.
TEST(TraceTest, ReplaySpeedupCompressesBeforeTheDurationCut) {
  const std::filesystem::path path = TempPath("speedup.jsonl");
  ASSERT_TRUE(WriteTrace(path, {SyntheticRequest(0, "a", {4, 2}), SyntheticRequest(4, "a", {4, 2}),
                                SyntheticRequest(8, "b", {4, 2})})
                  .ok());
  WorkloadSpec spec;
  spec.trace = path;
  spec.trace_speedup = 2;
  spec.duration_s = 3;  // of the compressed timeline: keeps 0 and 2 s
  absl::StatusOr<PreparedWorkload> prepared = PrepareWorkload(spec, {});
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  ASSERT_EQ(prepared->requests.size(), 2u);
  EXPECT_DOUBLE_EQ(prepared->requests[1].arrival_s, 2);
  EXPECT_DOUBLE_EQ(prepared->description["speedup"].get<double>(), 2);
  spec.trace_speedup = -1;
  EXPECT_THAT(PrepareWorkload(spec, {}).status().message(), HasSubstr("must be > 0"));
}

TEST(ChatLmsysTest, CountPopularityAndDailyShapeFollowTheOptions) {
  ChatLmsysOptions options;
  for (int i = 0; i < 4; ++i) options.models.push_back("m" + std::to_string(i));
  options.expected_requests = 20000;
  options.window_s = 1000;
  options.alpha = 1.0;
  options.amplitude = 0.5;
  options.cv = 1.0;  // Poisson: tight counts for the test
  options.lengths = LengthSampler(FixedLengths{{8, 8}});
  absl::StatusOr<std::vector<RequestSpec>> trace = GenerateChatLmsysTrace(options);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_NEAR(static_cast<double>(trace->size()), 20000, 20000 * 0.03);

  std::map<std::string, double> counts;
  double middle = 0;  // arrivals in the middle half of the window
  double previous = 0;
  for (const RequestSpec& r : *trace) {
    EXPECT_GE(r.arrival_s, previous);
    EXPECT_LT(r.arrival_s, options.window_s);
    previous = r.arrival_s;
    counts[r.model] += 1;
    if (r.arrival_s >= 250 && r.arrival_s < 750) middle += 1;
  }
  // Shares 1 : 1/2 : 1/3 : 1/4.
  EXPECT_NEAR(counts["m0"] / counts["m1"], 2.0, 0.12);
  EXPECT_NEAR(counts["m0"] / counts["m3"], 4.0, 0.3);
  // The integral of 1 - 0.5 cos(2 pi t) over [1/4, 3/4] is 1/2 + 0.5/pi of the total 1.
  EXPECT_NEAR(middle / trace->size(), 0.5 + 0.5 / std::numbers::pi, 0.02);
}

TEST(ChatLmsysTest, BurstyGapsAndSeedsRepeat) {
  ChatLmsysOptions options;
  options.models = {"a", "b"};
  options.expected_requests = 500;
  auto first = GenerateChatLmsysTrace(options);
  auto again = GenerateChatLmsysTrace(options);
  ASSERT_TRUE(first.ok() && again.ok());
  ASSERT_EQ(first->size(), again->size());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].arrival_s, (*again)[i].arrival_s);
    EXPECT_EQ((*first)[i].prompt_tokens, (*again)[i].prompt_tokens);
  }
}

TEST(ChatLmsysTest, RejectsBadOptions) {
  ChatLmsysOptions options;
  EXPECT_THAT(GenerateChatLmsysTrace(options).status().message(), HasSubstr("no models"));
  options.models = {"a"};
  options.amplitude = 1.0;
  EXPECT_THAT(GenerateChatLmsysTrace(options).status().message(), HasSubstr("amplitude"));
  options.amplitude = 0.5;
  options.window_s = 0;
  EXPECT_THAT(GenerateChatLmsysTrace(options).status().message(), HasSubstr("window"));
}

}  // namespace
}  // namespace muxserve::loadgen
