// Percentiles, throughput (both conventions) and SLO attainment on hand-made records whose
// answers are worked out by hand in the comments.
#include "muxserve/loadgen/stats.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/loadgen/report.h"

namespace muxserve::loadgen {
namespace {

using ::testing::HasSubstr;

TEST(PercentileTest, InterpolatesBetweenClosestRanksLikeNumpy) {
  const std::vector<double> values = {4, 1, 3, 2};  // sorted 1 2 3 4
  EXPECT_DOUBLE_EQ(Percentile(values, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(values, 50), 2.5);   // rank 1.5
  EXPECT_DOUBLE_EQ(Percentile(values, 90), 3.7);   // rank 2.7
  EXPECT_DOUBLE_EQ(Percentile(values, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(Percentile(values, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 90), 7);
  EXPECT_TRUE(std::isnan(Percentile({}, 50)));
}

TEST(PercentileTest, DescribesADistribution) {
  std::vector<double> values;
  for (int i = 1; i <= 101; ++i) values.push_back(i);  // rank q of 1..101 is q + 1
  const Distribution d = Describe(values);
  EXPECT_EQ(d.count, 101);
  EXPECT_DOUBLE_EQ(d.mean, 51);
  EXPECT_DOUBLE_EQ(d.p50, 51);
  EXPECT_DOUBLE_EQ(d.p90, 91);
  EXPECT_DOUBLE_EQ(d.p99, 100);
  EXPECT_DOUBLE_EQ(d.max, 101);
  EXPECT_TRUE(std::isnan(Describe({}).p50));
}

TEST(BaseLatencyTest, InterpolatesAndExtendsTheTtftLinearly) {
  BaseLatency base;
  base.ttft_points = {{100, 0.010}, {300, 0.030}, {500, 0.070}};
  base.tpot_s = 0.002;
  EXPECT_NEAR(base.Ttft(200), 0.020, 1e-12);  // inside the first segment
  EXPECT_NEAR(base.Ttft(400), 0.050, 1e-12);  // inside the second
  EXPECT_NEAR(base.Ttft(50), 0.005, 1e-12);   // extended down the first segment
  EXPECT_NEAR(base.Ttft(700), 0.110, 1e-12);  // extended up the last
  EXPECT_NEAR(base.Ttft(0), 0.0, 1e-12);
  EXPECT_NEAR(base.Predict(300, 11), 0.030 + 10 * 0.002, 1e-12);
  BaseLatency single;
  single.ttft_points = {{64, 0.5}};
  EXPECT_DOUBLE_EQ(single.Ttft(1000), 0.5);
}

RequestRecord Finished(int64_t index, const std::string& model, double arrival, double first,
                       double last, int32_t prompt, int32_t output) {
  RequestRecord r;
  r.index = index;
  r.model = model;
  r.arrival_s = arrival;
  r.send_s = arrival;
  r.first_token_s = first;
  r.last_token_s = last;
  r.done_s = last;
  r.prompt_tokens = prompt;
  r.output_tokens_requested = output;
  r.output_tokens = output;
  r.outcome = Outcome::kFinished;
  return r;
}

RequestRecord Failed(int64_t index, const std::string& model, Outcome outcome,
                     const std::string& why) {
  RequestRecord r;
  r.index = index;
  r.model = model;
  r.arrival_s = 1;
  r.send_s = 1.25;  // sent late
  r.done_s = 1.5;
  r.outcome = outcome;
  r.error = why;
  return r;
}

class SummarizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Model a: base = 0.1 s TTFT + 0.01 s per further token.
    base_["a"].ttft_points = {{10, 0.1}};
    base_["a"].tpot_s = 0.01;
    // Model b: base = 0.2 s + 0.02 s per further token.
    base_["b"].ttft_points = {{10, 0.2}};
    base_["b"].tpot_s = 0.02;
    // a: three finished, base 0.1 + 10 * 0.01 = 0.2 s each; e2e 0.19, 0.5, 0.9 (scale 0.95, 2.5,
    // 4.5).
    records_.push_back(Finished(0, "a", 0.0, 0.1, 0.19, 10, 11));
    records_.push_back(Finished(1, "a", 1.0, 1.2, 1.5, 10, 11));
    records_.push_back(Finished(2, "a", 3.0, 3.5, 3.9, 10, 11));
    // b: one finished (base 0.2 + 4 * 0.02 = 0.28 s, e2e 0.5: scale 1.79), one error, one abort.
    records_.push_back(Finished(3, "b", 1.0, 1.16, 1.5, 10, 5));
    records_.push_back(Failed(4, "b", Outcome::kError, "UNAVAILABLE: gone"));
    records_.push_back(Failed(5, "b", Outcome::kAborted, "aborted by the server"));
    rates_ = {{"a", 3.0}, {"b", 1.0}};
  }

  BaseLatencies base_;
  std::vector<RequestRecord> records_;
  std::vector<std::pair<std::string, double>> rates_;
};

TEST_F(SummarizeTest, CountsEveryRequestAndComputesThroughputBothWays) {
  absl::StatusOr<RunSummary> summary = Summarize(records_, rates_, base_, {1, 2, 5});
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(summary->models.size(), 2u);
  const ModelSummary& a = summary->models[0];
  const ModelSummary& b = summary->models[1];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.sent, 3);
  EXPECT_EQ(a.finished, 3);
  EXPECT_EQ(b.sent, 3);
  EXPECT_EQ(b.finished, 1);
  EXPECT_EQ(b.errors, 1);
  EXPECT_EQ(b.aborted, 1);
  EXPECT_EQ(summary->overall.sent, 6);
  EXPECT_EQ(summary->overall.finished + summary->overall.errors + summary->overall.aborted, 6);

  // a: 3 finished by its last completion at 3.9 s; b: 1 finished by 1.5 s.
  EXPECT_DOUBLE_EQ(a.throughput_rps, 3 / 3.9);
  EXPECT_DOUBLE_EQ(a.throughput_tps, 33 / 3.9);
  EXPECT_DOUBLE_EQ(b.throughput_rps, 1 / 1.5);
  EXPECT_DOUBLE_EQ(summary->throughput_rps_sum, 3 / 3.9 + 1 / 1.5);
  EXPECT_DOUBLE_EQ(summary->throughput_rps_weighted, (3 * (3 / 3.9) + 1 * (1 / 1.5)) / 4);
  EXPECT_DOUBLE_EQ(summary->throughput_tps_weighted, (3 * (33 / 3.9) + 1 * (5 / 1.5)) / 4);
  EXPECT_DOUBLE_EQ(summary->overall.throughput_rps, 4 / 3.9);
  EXPECT_DOUBLE_EQ(summary->duration_s, 3.9);
  EXPECT_DOUBLE_EQ(summary->max_send_lag_s, 0.25);
  EXPECT_EQ(summary->error_messages.at("UNAVAILABLE: gone"), 1);
  EXPECT_EQ(summary->error_messages.at("aborted by the server"), 1);

  // Latencies of finished requests only.
  EXPECT_EQ(a.ttft_s.count, 3);
  EXPECT_NEAR(a.ttft_s.p50, 0.2, 1e-12);   // 0.1, 0.2, 0.5
  EXPECT_NEAR(a.e2e_s.max, 0.9, 1e-12);    // 0.19, 0.5, 0.9
  EXPECT_NEAR(a.tpot_s.p50, 0.03, 1e-12);  // 0.009, 0.03, 0.04
  EXPECT_EQ(b.e2e_s.count, 1);
}

TEST_F(SummarizeTest, SloAttainmentCountsMissesAndFailuresAgainstEveryRequestSent) {
  absl::StatusOr<RunSummary> summary = Summarize(records_, rates_, base_, {1, 2, 5});
  ASSERT_TRUE(summary.ok()) << summary.status();
  const ModelSummary& a = summary->models[0];
  const ModelSummary& b = summary->models[1];
  ASSERT_EQ(a.slo.size(), 3u);
  // a's e2e over base: 0.95, 2.5, 4.5.
  EXPECT_NEAR(a.slo[0].attainment, 1.0 / 3, 1e-12);
  EXPECT_NEAR(a.slo[1].attainment, 1.0 / 3, 1e-12);
  EXPECT_NEAR(a.slo[2].attainment, 1.0, 1e-12);
  // b: only the finished one, at scale 1.79, of three sent.
  EXPECT_NEAR(b.slo[0].attainment, 0.0, 1e-12);
  EXPECT_NEAR(b.slo[1].attainment, 1.0 / 3, 1e-12);
  EXPECT_NEAR(b.slo[2].attainment, 1.0 / 3, 1e-12);
  // Overall: within scale 1: 1 of 6; scale 2: 2 of 6; scale 5: 4 of 6.
  EXPECT_NEAR(summary->overall.slo[0].attainment, 1.0 / 6, 1e-12);
  EXPECT_NEAR(summary->overall.slo[1].attainment, 2.0 / 6, 1e-12);
  EXPECT_NEAR(summary->overall.slo[2].attainment, 4.0 / 6, 1e-12);
}

TEST_F(SummarizeTest, AModelWithoutBaseHasNoSloCurve) {
  base_.erase("b");
  absl::StatusOr<RunSummary> summary = Summarize(records_, rates_, base_, DefaultSloScales());
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->models[0].slo.size(), 20u);
  EXPECT_TRUE(summary->models[1].slo.empty());
  EXPECT_TRUE(summary->overall.slo.empty());
}

TEST_F(SummarizeTest, ARecordOfAnUnknownModelIsAnError) {
  rates_.pop_back();
  EXPECT_THAT(Summarize(records_, rates_, base_, {1}).status().message(),
              HasSubstr("model 'b' has no rate"));
}

TEST(ReportTest, BaseLatenciesRoundTripThroughJson) {
  BaseLatencies base;
  base["m"].ttft_points = {{16, 0.01}, {64, 0.03}};
  base["m"].tpot_s = 0.004;
  absl::StatusOr<BaseLatencies> back = BaseLatenciesFromJson(ToJson(base), "base.json");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->contains("m"));
  EXPECT_EQ(back->at("m").ttft_points, base["m"].ttft_points);
  EXPECT_EQ(back->at("m").tpot_s, 0.004);
}

TEST(ReportTest, BadBaseLatenciesNameTheKey) {
  using nlohmann::json;
  EXPECT_THAT(BaseLatenciesFromJson(json::array(), "f.json").status().message(),
              HasSubstr("f.json: expected an object"));
  EXPECT_THAT(
      BaseLatenciesFromJson(json::parse(R"({"m": {"ttft_points": [], "tpot_s": 1}})"), "f.json")
          .status()
          .message(),
      HasSubstr("key 'm.ttft_points'"));
  EXPECT_THAT(
      BaseLatenciesFromJson(
          json::parse(R"({"m": {"ttft_points": [[64, 0.1], [16, 0.2]], "tpot_s": 1}})"), "f.json")
          .status()
          .message(),
      HasSubstr("key 'm.ttft_points[1]': prompt lengths must increase"));
  EXPECT_THAT(BaseLatenciesFromJson(
                  json::parse(R"({"m": {"ttft_points": [[1, 1]], "tpot_s": "x"}})"), "f.json")
                  .status()
                  .message(),
              HasSubstr("key 'm.tpot_s'"));
}

TEST(ReportTest, SummaryJsonWritesNullForMissingLatencies) {
  ModelSummary empty;
  empty.name = "idle";
  empty.ttft_s = Describe({});
  const nlohmann::json json = ToJson(empty);
  EXPECT_TRUE(json["ttft_s"]["p50"].is_null());
  EXPECT_EQ(json["ttft_s"]["count"], 0);
}

}  // namespace
}  // namespace muxserve::loadgen
