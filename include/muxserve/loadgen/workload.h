// Synthetic workloads the way the MuxServe paper built them: per-model arrival processes
// (Poisson or Gamma), power-law popularity over the models, and request lengths drawn from a
// ShareGPT-like distribution, a fixed pair, or the lengths of a trace. Everything is seeded:
// the same options always give the same request stream. docs/loadgen.md has the formulas.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace muxserve::loadgen {

// One request of a workload: when it is sent, to which model, and how long it is.
struct RequestSpec {
  double arrival_s = 0;  // seconds from the start of the run
  std::string model;
  int32_t prompt_tokens = 0;  // length of the synthetic token-id prompt (informational with text)
  std::string prompt_text;    // sent as text instead of token ids when not empty
  int32_t output_tokens = 0;  // max_tokens, sent with ignore_eos so the output has this length
};

enum class ArrivalKind { kPoisson, kGamma };

struct ArrivalOptions {
  ArrivalKind kind = ArrivalKind::kPoisson;
  double cv = 1.0;  // coefficient of variation of the gaps (Gamma only; Poisson has 1)
};

// "poisson" or "gamma"; the CV is set apart.
absl::StatusOr<ArrivalKind> ParseArrivalKind(std::string_view name);
std::string_view ArrivalKindName(ArrivalKind kind);

// A renewal process of mean rate `rate` (arrivals per second) starting at time 0: the gaps are
// exponential with mean 1/rate (Poisson), or Gamma with shape k = 1/cv^2 and scale
// theta = cv^2/rate (mean 1/rate, standard deviation cv/rate).
class ArrivalProcess {
 public:
  static absl::StatusOr<ArrivalProcess> Create(double rate, const ArrivalOptions& options,
                                               uint64_t seed);
  // The time of the next arrival, in seconds.
  double Next();

 private:
  ArrivalProcess(std::gamma_distribution<double> gap, uint64_t seed) : gap_(gap), rng_(seed) {}

  std::gamma_distribution<double> gap_;  // shape 1 is the exponential distribution
  std::mt19937_64 rng_;
  double now_ = 0;
};

// Power-law popularity: the model of rank k (k = 1 the most popular) gets
// lambda_k = rate_scale * k^-alpha requests per second, so the most popular model's rate is
// rate_scale. (MuxServe's end-to-end benchmark uses a top rate of 40 x its rate scale.)
std::vector<double> PowerLawRates(size_t count, double alpha, double rate_scale);

// "m1=2,m2=0.5": explicit per-model rates in requests per second, in the given order.
absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseExplicitRates(
    std::string_view text);

// A prompt and an output length, in tokens.
struct LengthPair {
  int32_t prompt = 0;
  int32_t output = 0;
  friend bool operator==(const LengthPair&, const LengthPair&) = default;
};

// A request with a synthetic prompt of `lengths.prompt` token ids.
RequestSpec SyntheticRequest(double arrival_s, std::string model, const LengthPair& lengths);

// exp(mu + sigma * Z), Z standard normal: median e^mu, mean e^(mu + sigma^2 / 2).
struct LogNormal {
  double mu = 0;
  double sigma = 1;
};

// Log-normal prompt and output lengths, redrawn until the pair passes the filter MuxServe applied
// to ShareGPT: min_tokens <= prompt <= max_prompt, min_tokens <= output,
// prompt + output <= max_total.
struct FilteredLogNormalLengths {
  std::string name;
  LogNormal prompt;
  LogNormal output;
  int32_t min_tokens = 4;
  int32_t max_prompt = 1024;
  int32_t max_total = 2048;
};

// After the filter the means are about 161 prompt and 338 output tokens (ShareGPT as the vLLM paper
// reports it), with a heavy right tail; docs/loadgen.md says where the numbers come from.
FilteredLogNormalLengths ShareGptLikeLengths();
// After the filter the means are about 100 prompt and 261 output tokens: MuxServe's ChatLMSYS
// window.
FilteredLogNormalLengths ChatLmsysLikeLengths();

struct FixedLengths {
  LengthPair pair;
};

// Pairs drawn uniformly, with replacement, from a list (the lengths of a trace).
struct EmpiricalLengths {
  std::string source;
  std::vector<LengthPair> pairs;
};

class LengthSampler {
 public:
  using Distribution = std::variant<FilteredLogNormalLengths, FixedLengths, EmpiricalLengths>;

  explicit LengthSampler(Distribution distribution) : distribution_(std::move(distribution)) {}
  // "sharegpt", "chatlmsys", "fixed:P,O" or "trace:FILE" (the prompt_tokens and output_tokens of
  // a trace file's requests).
  static absl::StatusOr<LengthSampler> Parse(std::string_view spec);

  LengthPair Sample(std::mt19937_64& rng) const;
  // The spec it came from, e.g. "sharegpt" or "fixed:128,128".
  std::string Describe() const;
  const Distribution& distribution() const { return distribution_; }

 private:
  Distribution distribution_;
};

struct WorkloadOptions {
  std::vector<std::string> models;  // in rank order
  std::vector<double> rates;        // requests per second, one per model
  ArrivalOptions arrival;
  LengthSampler lengths{ShareGptLikeLengths()};
  // Stop at whichever comes first: arrivals at or after duration_s, or max_requests requests in
  // all. At least one of them must be set (> 0).
  double duration_s = 0;
  int64_t max_requests = 0;
  uint64_t seed = 1;
};

// The merged request stream of every model, in arrival order. Model i draws its arrivals and its
// lengths from generators seeded by (seed, i) alone, so the stream of one model does not change
// with the duration or with the other models' rates.
absl::StatusOr<std::vector<RequestSpec>> GenerateWorkload(const WorkloadOptions& options);

// A 64-bit seed derived from a base seed and a stream number (std::seed_seq mixing).
uint64_t DeriveSeed(uint64_t seed, uint64_t stream);

}  // namespace muxserve::loadgen
