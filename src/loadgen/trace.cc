#include "muxserve/loadgen/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"

namespace muxserve::loadgen {
namespace {

using nlohmann::json;

absl::Status LineError(const std::string& origin, int line, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ":", line, ": ", AsAbsl(message)));
}

absl::StatusOr<int32_t> ReadCount(const json& object, const char* field, const std::string& origin,
                                  int line) {
  const json& value = object.at(field);
  if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
      value.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
    return LineError(
        origin, line,
        absl::StrCat("field '", field, "': expected an integer >= 1, got ", value.dump()));
  }
  return value.get<int32_t>();
}

absl::StatusOr<RequestSpec> ParseLine(const std::string& text, const std::string& origin,
                                      int line) {
  const json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return LineError(origin, line, "not valid JSON");
  if (!object.is_object()) return LineError(origin, line, "expected a JSON object");
  for (const auto& [key, unused] : object.items()) {
    if (key != "arrival_s" && key != "model" && key != "prompt_tokens" && key != "prompt" &&
        key != "output_tokens") {
      return LineError(origin, line,
                       absl::StrCat("unknown field '", key,
                                    "' (known: arrival_s, model, prompt_tokens, prompt, "
                                    "output_tokens)"));
    }
  }
  RequestSpec request;
  if (!object.contains("arrival_s") || !object["arrival_s"].is_number() ||
      !std::isfinite(object["arrival_s"].get<double>()) || object["arrival_s"].get<double>() < 0) {
    return LineError(origin, line, "field 'arrival_s': expected a number of seconds >= 0");
  }
  request.arrival_s = object["arrival_s"].get<double>();
  if (!object.contains("model") || !object["model"].is_string() ||
      object["model"].get<std::string>().empty()) {
    return LineError(origin, line, "field 'model': expected a non-empty string");
  }
  request.model = object["model"].get<std::string>();
  if (object.contains("prompt")) {
    if (!object["prompt"].is_string() || object["prompt"].get<std::string>().empty()) {
      return LineError(origin, line, "field 'prompt': expected a non-empty string");
    }
    request.prompt_text = object["prompt"].get<std::string>();
  }
  if (object.contains("prompt_tokens")) {
    ASSIGN_OR_RETURN(request.prompt_tokens, ReadCount(object, "prompt_tokens", origin, line));
  } else if (request.prompt_text.empty()) {
    return LineError(origin, line, "set 'prompt_tokens' or 'prompt'");
  }
  if (!object.contains("output_tokens")) {
    return LineError(origin, line, "field 'output_tokens' is missing");
  }
  ASSIGN_OR_RETURN(request.output_tokens, ReadCount(object, "output_tokens", origin, line));
  return request;
}

// E(t) = integral over [0, t] of 1 - a cos(2 pi s / w) ds: the time-varying envelope's
// cumulative intensity, with mean 1 over the window.
double Envelope(double t, double amplitude, double window) {
  return t -
         amplitude * window / (2 * std::numbers::pi) * std::sin(2 * std::numbers::pi * t / window);
}

// The t in [0, window] with Envelope(t) = target (E is strictly increasing for amplitude < 1).
double InverseEnvelope(double target, double amplitude, double window) {
  double low = 0;
  double high = window;
  for (int i = 0; i < 64; ++i) {
    const double middle = 0.5 * (low + high);
    (Envelope(middle, amplitude, window) < target ? low : high) = middle;
  }
  return 0.5 * (low + high);
}

}  // namespace

absl::StatusOr<std::vector<RequestSpec>> ParseTrace(const std::string& text,
                                                    const std::string& origin) {
  std::vector<RequestSpec> requests;
  std::istringstream in(text);
  std::string line_text;
  int line = 0;
  while (std::getline(in, line_text)) {
    ++line;
    if (line_text.find_first_not_of(" \t\r") == std::string::npos) continue;
    ASSIGN_OR_RETURN(RequestSpec request, ParseLine(line_text, origin, line));
    requests.push_back(std::move(request));
  }
  std::stable_sort(
      requests.begin(), requests.end(),
      [](const RequestSpec& a, const RequestSpec& b) { return a.arrival_s < b.arrival_s; });
  return requests;
}

absl::StatusOr<std::vector<RequestSpec>> ReadTrace(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace '", path.string(), "'"));
  std::ostringstream content;
  content << in.rdbuf();
  return ParseTrace(content.str(), path.string());
}

absl::Status WriteTrace(const std::filesystem::path& path,
                        const std::vector<RequestSpec>& requests) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path.string(), "'"));
  for (const RequestSpec& request : requests) {
    json object = {{"arrival_s", request.arrival_s}, {"model", request.model}};
    if (!request.prompt_text.empty()) object["prompt"] = request.prompt_text;
    if (request.prompt_tokens > 0) object["prompt_tokens"] = request.prompt_tokens;
    object["output_tokens"] = request.output_tokens;
    out << object.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing '", path.string(), "' failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RequestSpec>> CompressTrace(std::vector<RequestSpec> requests,
                                                       double factor) {
  if (!(factor > 0) || !std::isfinite(factor)) {
    return absl::InvalidArgumentError(absl::StrCat("compression factor ", factor, " must be > 0"));
  }
  for (RequestSpec& request : requests) request.arrival_s /= factor;
  return requests;
}

std::map<std::string, double> TraceRates(const std::vector<RequestSpec>& requests) {
  std::map<std::string, double> rates;
  double span = 0;
  for (const RequestSpec& request : requests) {
    rates[request.model] += 1;
    span = std::max(span, request.arrival_s);
  }
  if (span > 0) {
    for (auto& [model, rate] : rates) rate /= span;
  }
  return rates;
}

absl::StatusOr<std::vector<RequestSpec>> GenerateChatLmsysTrace(const ChatLmsysOptions& options) {
  if (options.models.empty()) return absl::InvalidArgumentError("chatlmsys trace: no models");
  if (options.expected_requests < 1) {
    return absl::InvalidArgumentError("chatlmsys trace: expected requests must be >= 1");
  }
  if (!(options.window_s > 0)) {
    return absl::InvalidArgumentError("chatlmsys trace: the window must be > 0 seconds");
  }
  if (!(options.alpha >= 0))
    return absl::InvalidArgumentError("chatlmsys trace: alpha must be >= 0");
  if (!(options.amplitude >= 0 && options.amplitude < 1)) {
    return absl::InvalidArgumentError("chatlmsys trace: amplitude must be in [0, 1)");
  }
  const std::vector<double> weights = PowerLawRates(options.models.size(), options.alpha, 1.0);
  double weight_sum = 0;
  for (double weight : weights) weight_sum += weight;

  std::vector<RequestSpec> requests;
  for (size_t i = 0; i < options.models.size(); ++i) {
    const double mean_rate =
        static_cast<double>(options.expected_requests) * weights[i] / weight_sum / options.window_s;
    // A unit-rate renewal process in rescaled time u = mean_rate * E(t), mapped back to t.
    ASSIGN_OR_RETURN(ArrivalProcess rescaled,
                     ArrivalProcess::Create(1.0, {ArrivalKind::kGamma, options.cv},
                                            DeriveSeed(options.seed, 2 * i)));
    std::mt19937_64 length_rng(DeriveSeed(options.seed, 2 * i + 1));
    while (true) {
      const double envelope_target = rescaled.Next() / mean_rate;
      if (envelope_target >= options.window_s) break;  // E(window) = window
      const LengthPair lengths = options.lengths.Sample(length_rng);
      requests.push_back(
          SyntheticRequest(InverseEnvelope(envelope_target, options.amplitude, options.window_s),
                           options.models[i], lengths));
    }
  }
  std::stable_sort(
      requests.begin(), requests.end(),
      [](const RequestSpec& a, const RequestSpec& b) { return a.arrival_s < b.arrival_s; });
  return requests;
}

}  // namespace muxserve::loadgen
