#include "muxserve/loadgen/workload.h"

#include <cmath>
#include <queue>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "muxserve/common/status.h"
#include "muxserve/loadgen/trace.h"

namespace muxserve::loadgen {
namespace {

int32_t RoundToTokens(double value) {
  // Lengths beyond int32 are rejected by the filter anyway; clamp before converting.
  return static_cast<int32_t>(std::llround(std::min(value, 1e9)));
}

LengthPair SampleFiltered(const FilteredLogNormalLengths& d, std::mt19937_64& rng) {
  std::lognormal_distribution<double> prompt(d.prompt.mu, d.prompt.sigma);
  std::lognormal_distribution<double> output(d.output.mu, d.output.sigma);
  while (true) {
    const LengthPair pair{RoundToTokens(prompt(rng)), RoundToTokens(output(rng))};
    if (pair.prompt >= d.min_tokens && pair.output >= d.min_tokens && pair.prompt <= d.max_prompt &&
        int64_t{pair.prompt} + pair.output <= d.max_total) {
      return pair;
    }
  }
}

absl::StatusOr<int32_t> ParseLength(absl::string_view text, std::string_view spec) {
  int32_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lengths '", AsAbsl(spec), "': '", text, "' is not a positive token count"));
  }
  return value;
}

}  // namespace

RequestSpec SyntheticRequest(double arrival_s, std::string model, const LengthPair& lengths) {
  RequestSpec request;
  request.arrival_s = arrival_s;
  request.model = std::move(model);
  request.prompt_tokens = lengths.prompt;
  request.output_tokens = lengths.output;
  return request;
}

absl::StatusOr<ArrivalKind> ParseArrivalKind(std::string_view name) {
  if (name == "poisson") return ArrivalKind::kPoisson;
  if (name == "gamma") return ArrivalKind::kGamma;
  return absl::InvalidArgumentError(
      absl::StrCat("arrival '", AsAbsl(name), "': expected poisson or gamma"));
}

std::string_view ArrivalKindName(ArrivalKind kind) {
  return kind == ArrivalKind::kPoisson ? "poisson" : "gamma";
}

absl::StatusOr<ArrivalProcess> ArrivalProcess::Create(double rate, const ArrivalOptions& options,
                                                      uint64_t seed) {
  if (!(rate > 0) || !std::isfinite(rate)) {
    return absl::InvalidArgumentError(absl::StrCat("arrival rate ", rate, " must be > 0"));
  }
  double shape = 1.0;
  if (options.kind == ArrivalKind::kGamma) {
    if (!(options.cv > 0) || !std::isfinite(options.cv)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gamma arrivals: cv ", options.cv, " must be > 0"));
    }
    shape = 1.0 / (options.cv * options.cv);
  }
  // Mean gap shape * scale = 1 / rate.
  return ArrivalProcess(std::gamma_distribution<double>(shape, 1.0 / (shape * rate)), seed);
}

double ArrivalProcess::Next() {
  now_ += gap_(rng_);
  return now_;
}

std::vector<double> PowerLawRates(size_t count, double alpha, double rate_scale) {
  std::vector<double> rates(count);
  for (size_t k = 0; k < count; ++k) {
    rates[k] = rate_scale * std::pow(static_cast<double>(k + 1), -alpha);
  }
  return rates;
}

absl::StatusOr<std::vector<std::pair<std::string, double>>> ParseExplicitRates(
    std::string_view text) {
  std::vector<std::pair<std::string, double>> rates;
  for (absl::string_view item : absl::StrSplit(AsAbsl(text), ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    const size_t equals = item.find('=');
    double rate = 0;
    if (equals == absl::string_view::npos || equals == 0 ||
        !absl::SimpleAtod(item.substr(equals + 1), &rate) || !(rate > 0) || !std::isfinite(rate)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rates '", AsAbsl(text), "': item '", item,
                       "' is not MODEL=RATE with a rate > 0 (requests per second)"));
    }
    std::string model(item.substr(0, equals));
    for (const auto& [seen, unused] : rates) {
      if (seen == model) {
        return absl::InvalidArgumentError(
            absl::StrCat("rates '", AsAbsl(text), "': model '", model, "' is given twice"));
      }
    }
    rates.emplace_back(std::move(model), rate);
  }
  if (rates.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("rates '", AsAbsl(text), "': empty"));
  }
  return rates;
}

// mu is calibrated (docs/loadgen.md has the script) so that the lengths that pass the filter have
// the target means; sigma sets the spread and is our choice.
FilteredLogNormalLengths ShareGptLikeLengths() {
  return FilteredLogNormalLengths{.name = "sharegpt",
                                  .prompt = {.mu = 4.60, .sigma = 1.2},
                                  .output = {.mu = 5.46, .sigma = 1.0}};
}

FilteredLogNormalLengths ChatLmsysLikeLengths() {
  return FilteredLogNormalLengths{.name = "chatlmsys",
                                  .prompt = {.mu = 4.06, .sigma = 1.1},
                                  .output = {.mu = 5.14, .sigma = 1.0}};
}

absl::StatusOr<LengthSampler> LengthSampler::Parse(std::string_view spec) {
  if (spec == "sharegpt") return LengthSampler(ShareGptLikeLengths());
  if (spec == "chatlmsys") return LengthSampler(ChatLmsysLikeLengths());
  if (spec.starts_with("fixed:")) {
    const std::vector<absl::string_view> parts = absl::StrSplit(AsAbsl(spec.substr(6)), ',');
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("lengths '", AsAbsl(spec), "': expected fixed:PROMPT,OUTPUT"));
    }
    ASSIGN_OR_RETURN(const int32_t prompt, ParseLength(parts[0], spec));
    ASSIGN_OR_RETURN(const int32_t output, ParseLength(parts[1], spec));
    return LengthSampler(FixedLengths{{prompt, output}});
  }
  if (spec.starts_with("trace:")) {
    const std::string path(spec.substr(6));
    ASSIGN_OR_RETURN(std::vector<RequestSpec> trace, ReadTrace(path));
    EmpiricalLengths lengths;
    lengths.source = path;
    for (const RequestSpec& request : trace) {
      if (request.prompt_tokens < 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lengths '", AsAbsl(spec), "': every request of the trace needs prompt_tokens >= 1"));
      }
      lengths.pairs.push_back({request.prompt_tokens, request.output_tokens});
    }
    if (lengths.pairs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("lengths '", AsAbsl(spec), "': empty trace"));
    }
    return LengthSampler(std::move(lengths));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "lengths '", AsAbsl(spec), "': expected sharegpt, chatlmsys, fixed:P,O or trace:FILE"));
}

LengthPair LengthSampler::Sample(std::mt19937_64& rng) const {
  struct Visitor {
    std::mt19937_64& rng;
    LengthPair operator()(const FilteredLogNormalLengths& d) const {
      return SampleFiltered(d, rng);
    }
    LengthPair operator()(const FixedLengths& d) const { return d.pair; }
    LengthPair operator()(const EmpiricalLengths& d) const {
      std::uniform_int_distribution<size_t> pick(0, d.pairs.size() - 1);
      return d.pairs[pick(rng)];
    }
  };
  return std::visit(Visitor{rng}, distribution_);
}

std::string LengthSampler::Describe() const {
  struct Visitor {
    std::string operator()(const FilteredLogNormalLengths& d) const { return d.name; }
    std::string operator()(const FixedLengths& d) const {
      return absl::StrCat("fixed:", d.pair.prompt, ",", d.pair.output);
    }
    std::string operator()(const EmpiricalLengths& d) const {
      return absl::StrCat("trace:", d.source);
    }
  };
  return std::visit(Visitor{}, distribution_);
}

uint64_t DeriveSeed(uint64_t seed, uint64_t stream) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                         static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  uint32_t words[2];
  sequence.generate(words, words + 2);
  return (uint64_t{words[0]} << 32) | words[1];
}

absl::StatusOr<std::vector<RequestSpec>> GenerateWorkload(const WorkloadOptions& options) {
  if (options.models.empty()) return absl::InvalidArgumentError("workload: no models");
  if (options.rates.size() != options.models.size()) {
    return absl::InvalidArgumentError(absl::StrCat("workload: ", options.models.size(),
                                                   " models but ", options.rates.size(), " rates"));
  }
  if (options.duration_s <= 0 && options.max_requests <= 0) {
    return absl::InvalidArgumentError("workload: set a duration or a request count (> 0)");
  }
  struct Stream {
    ArrivalProcess arrivals;
    std::mt19937_64 length_rng;
  };
  std::vector<Stream> streams;
  // (next arrival, model index): the earliest first.
  using Pending = std::pair<double, size_t>;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> next;
  for (size_t i = 0; i < options.models.size(); ++i) {
    absl::StatusOr<ArrivalProcess> arrivals =
        ArrivalProcess::Create(options.rates[i], options.arrival, DeriveSeed(options.seed, 2 * i));
    if (!arrivals.ok()) {
      return Annotate(arrivals.status(), absl::StrCat("model '", options.models[i], "'"));
    }
    streams.push_back({*std::move(arrivals), std::mt19937_64(DeriveSeed(options.seed, 2 * i + 1))});
    next.emplace(streams.back().arrivals.Next(), i);
  }
  std::vector<RequestSpec> requests;
  while (true) {
    const auto [arrival, model] = next.top();
    if (options.duration_s > 0 && arrival >= options.duration_s) break;
    if (options.max_requests > 0 && static_cast<int64_t>(requests.size()) >= options.max_requests) {
      break;
    }
    next.pop();
    Stream& stream = streams[model];
    const LengthPair lengths = options.lengths.Sample(stream.length_rng);
    requests.push_back(SyntheticRequest(arrival, options.models[model], lengths));
    next.emplace(stream.arrivals.Next(), model);
  }
  return requests;
}

}  // namespace muxserve::loadgen
