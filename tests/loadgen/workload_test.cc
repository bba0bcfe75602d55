// Arrival processes, popularity and length distributions: their statistics match what was asked
// for (fixed seeds, tolerances several standard errors wide), and bad specs are refused clearly.
#include "muxserve/loadgen/workload.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::loadgen {
namespace {

using ::testing::HasSubstr;

struct GapStats {
  double mean = 0;
  double cv = 0;
};

GapStats MeasureGaps(double rate, ArrivalOptions options, int count, uint64_t seed) {
  absl::StatusOr<ArrivalProcess> process = ArrivalProcess::Create(rate, options, seed);
  EXPECT_TRUE(process.ok()) << process.status();
  std::vector<double> gaps;
  double previous = 0;
  for (int i = 0; i < count; ++i) {
    const double now = process->Next();
    gaps.push_back(now - previous);
    previous = now;
  }
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / count;
  double variance = 0;
  for (double gap : gaps) variance += (gap - mean) * (gap - mean);
  variance /= count - 1;
  return {mean, std::sqrt(variance) / mean};
}

TEST(ArrivalProcessTest, PoissonGapsHaveTheAskedRateAndCvOne) {
  // 40000 exponential gaps: the standard error of the mean is 0.5 %, of the CV about 0.5 %.
  const GapStats stats = MeasureGaps(8.0, {ArrivalKind::kPoisson, 1.0}, 40000, 7);
  EXPECT_NEAR(1.0 / stats.mean, 8.0, 8.0 * 0.02);
  EXPECT_NEAR(stats.cv, 1.0, 0.03);
}

TEST(ArrivalProcessTest, GammaGapsHaveTheAskedRateAndCv) {
  for (double cv : {0.5, 2.0, 3.0}) {
    const GapStats stats = MeasureGaps(5.0, {ArrivalKind::kGamma, cv}, 60000, 11);
    EXPECT_NEAR(1.0 / stats.mean, 5.0, 5.0 * 0.04) << "cv " << cv;
    EXPECT_NEAR(stats.cv, cv, cv * 0.06) << "cv " << cv;
  }
}

TEST(ArrivalProcessTest, ArrivalsIncreaseAndRepeatForTheSameSeed) {
  auto a = ArrivalProcess::Create(3.0, {}, 42);
  auto b = ArrivalProcess::Create(3.0, {}, 42);
  ASSERT_TRUE(a.ok() && b.ok());
  double previous = 0;
  for (int i = 0; i < 100; ++i) {
    const double t = a->Next();
    EXPECT_GT(t, previous);
    EXPECT_EQ(t, b->Next());
    previous = t;
  }
}

TEST(ArrivalProcessTest, RejectsBadRatesAndCv) {
  EXPECT_THAT(ArrivalProcess::Create(0, {}, 1).status().message(), HasSubstr("must be > 0"));
  EXPECT_THAT(ArrivalProcess::Create(-1, {}, 1).status().message(), HasSubstr("must be > 0"));
  EXPECT_THAT(ArrivalProcess::Create(1, {ArrivalKind::kGamma, 0}, 1).status().message(),
              HasSubstr("cv 0"));
  EXPECT_FALSE(ParseArrivalKind("uniform").ok());
  EXPECT_EQ(*ParseArrivalKind("gamma"), ArrivalKind::kGamma);
}

TEST(PowerLawTest, RatesFollowRankToTheMinusAlpha) {
  const std::vector<double> rates = PowerLawRates(5, 0.9, 4.0);
  ASSERT_EQ(rates.size(), 5u);
  EXPECT_DOUBLE_EQ(rates[0], 4.0);  // the top rate is the rate scale
  for (size_t k = 1; k < rates.size(); ++k) {
    EXPECT_NEAR(rates[0] / rates[k], std::pow(k + 1.0, 0.9), 1e-12);
  }
  const std::vector<double> flat = PowerLawRates(3, 0.0, 2.0);
  EXPECT_EQ(flat, std::vector<double>({2.0, 2.0, 2.0}));
}

TEST(PowerLawTest, ParsesExplicitRates) {
  auto rates = ParseExplicitRates("a=2, b=0.5");
  ASSERT_TRUE(rates.ok()) << rates.status();
  ASSERT_EQ(rates->size(), 2u);
  EXPECT_EQ((*rates)[0], std::make_pair(std::string("a"), 2.0));
  EXPECT_EQ((*rates)[1], std::make_pair(std::string("b"), 0.5));
  EXPECT_THAT(ParseExplicitRates("a=2,b").status().message(), HasSubstr("item 'b'"));
  EXPECT_THAT(ParseExplicitRates("a=-1").status().message(), HasSubstr("MODEL=RATE"));
  EXPECT_THAT(ParseExplicitRates("a=1,a=2").status().message(), HasSubstr("given twice"));
  EXPECT_FALSE(ParseExplicitRates("").ok());
}

TEST(WorkloadTest, PerModelCountsMatchTheirRates) {
  WorkloadOptions options;
  options.models = {"a", "b", "c"};
  options.rates = PowerLawRates(3, 1.3, 20.0);  // 20, 8.12, 4.78 req/s
  options.lengths = LengthSampler(FixedLengths{{8, 4}});
  options.duration_s = 500;
  options.seed = 3;
  absl::StatusOr<std::vector<RequestSpec>> requests = GenerateWorkload(options);
  ASSERT_TRUE(requests.ok()) << requests.status();
  std::map<std::string, double> counts;
  double previous = 0;
  for (const RequestSpec& r : *requests) {
    counts[r.model] += 1;
    EXPECT_GE(r.arrival_s, previous);
    EXPECT_LT(r.arrival_s, options.duration_s);
    previous = r.arrival_s;
  }
  for (size_t i = 0; i < 3; ++i) {
    const double expected = options.rates[i] * options.duration_s;  // >= 2390: 2 % is > 1 sigma
    EXPECT_NEAR(counts[options.models[i]], expected, 0.05 * expected) << options.models[i];
  }
  // The popularity ratio of the first two models is 2^1.3.
  EXPECT_NEAR(counts["a"] / counts["b"], std::pow(2.0, 1.3), 0.12);
}

TEST(WorkloadTest, SameSeedSameStreamAndModelStreamsIndependentOfTheDuration) {
  WorkloadOptions options;
  options.models = {"a", "b"};
  options.rates = {3.0, 1.0};
  options.duration_s = 20;
  auto first = GenerateWorkload(options);
  auto again = GenerateWorkload(options);
  options.duration_s = 40;
  auto longer = GenerateWorkload(options);
  ASSERT_TRUE(first.ok() && again.ok() && longer.ok());
  ASSERT_EQ(first->size(), again->size());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].arrival_s, (*again)[i].arrival_s);
    EXPECT_EQ((*first)[i].prompt_tokens, (*again)[i].prompt_tokens);
    // The longer run starts with the same requests.
    EXPECT_EQ((*first)[i].arrival_s, (*longer)[i].arrival_s);
    EXPECT_EQ((*first)[i].output_tokens, (*longer)[i].output_tokens);
  }
  options.seed = 2;
  auto other = GenerateWorkload(options);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].arrival_s, (*first)[0].arrival_s);
}

TEST(WorkloadTest, RequestCountStopsTheStream) {
  WorkloadOptions options;
  options.models = {"a"};
  options.rates = {1.0};
  options.max_requests = 25;
  auto requests = GenerateWorkload(options);
  ASSERT_TRUE(requests.ok());
  EXPECT_EQ(requests->size(), 25u);
}

TEST(WorkloadTest, RejectsIncompleteOptions) {
  WorkloadOptions options;
  EXPECT_THAT(GenerateWorkload(options).status().message(), HasSubstr("no models"));
  options.models = {"a"};
  EXPECT_THAT(GenerateWorkload(options).status().message(), HasSubstr("1 models but 0 rates"));
  options.rates = {1.0};
  EXPECT_THAT(GenerateWorkload(options).status().message(), HasSubstr("duration or a request"));
  options.duration_s = 1;
  options.rates = {0.0};
  EXPECT_THAT(GenerateWorkload(options).status().message(), HasSubstr("model 'a'"));
}

struct LengthStats {
  double prompt_mean = 0;
  double output_mean = 0;
};

LengthStats SampleLengths(const FilteredLogNormalLengths& d, int count) {
  const LengthSampler sampler(d);
  std::mt19937_64 rng(5);
  LengthStats stats;
  for (int i = 0; i < count; ++i) {
    const LengthPair pair = sampler.Sample(rng);
    EXPECT_GE(pair.prompt, d.min_tokens);
    EXPECT_GE(pair.output, d.min_tokens);
    EXPECT_LE(pair.prompt, d.max_prompt);
    EXPECT_LE(pair.prompt + pair.output, d.max_total);
    stats.prompt_mean += pair.prompt;
    stats.output_mean += pair.output;
  }
  stats.prompt_mean /= count;
  stats.output_mean /= count;
  return stats;
}

TEST(LengthsTest, ShareGptLikeLengthsPassTheFilterWithTheTargetMeans) {
  const LengthStats stats = SampleLengths(ShareGptLikeLengths(), 40000);
  EXPECT_NEAR(stats.prompt_mean, 161, 161 * 0.04);
  EXPECT_NEAR(stats.output_mean, 338, 338 * 0.04);
}

TEST(LengthsTest, ChatLmsysLikeLengthsHaveTheTargetMeans) {
  const LengthStats stats = SampleLengths(ChatLmsysLikeLengths(), 40000);
  EXPECT_NEAR(stats.prompt_mean, 100, 100 * 0.04);
  EXPECT_NEAR(stats.output_mean, 261, 261 * 0.04);
}

TEST(LengthsTest, ParsesEverySpec) {
  EXPECT_EQ(LengthSampler::Parse("sharegpt")->Describe(), "sharegpt");
  EXPECT_EQ(LengthSampler::Parse("chatlmsys")->Describe(), "chatlmsys");
  absl::StatusOr<LengthSampler> fixed = LengthSampler::Parse("fixed:128,64");
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  std::mt19937_64 rng(1);
  EXPECT_EQ(fixed->Sample(rng), (LengthPair{128, 64}));
  EXPECT_EQ(fixed->Describe(), "fixed:128,64");
  EXPECT_THAT(LengthSampler::Parse("fixed:128").status().message(), HasSubstr("fixed:PROMPT"));
  EXPECT_THAT(LengthSampler::Parse("fixed:0,5").status().message(), HasSubstr("'0'"));
  EXPECT_THAT(LengthSampler::Parse("zipf").status().message(), HasSubstr("expected sharegpt"));
  EXPECT_EQ(LengthSampler::Parse("trace:/no/such/trace.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LengthsTest, TraceLengthsAreDrawnFromTheTrace) {
  const std::filesystem::path path =
      std::filesystem::path(testing::TempDir()) / "lengths_trace.jsonl";
  std::ofstream(path)
      << R"({"arrival_s": 0, "model": "a", "prompt_tokens": 10, "output_tokens": 20})"
      << "\n"
      << R"({"arrival_s": 1, "model": "b", "prompt_tokens": 30, "output_tokens": 40})"
      << "\n";
  absl::StatusOr<LengthSampler> sampler = LengthSampler::Parse("trace:" + path.string());
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  std::mt19937_64 rng(9);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 200; ++i) {
    const LengthPair pair = sampler->Sample(rng);
    EXPECT_TRUE(pair == (LengthPair{10, 20}) || pair == (LengthPair{30, 40}));
    ++seen[pair.prompt];
  }
  EXPECT_GT(seen[10], 60);
  EXPECT_GT(seen[30], 60);
}

}  // namespace
}  // namespace muxserve::loadgen
