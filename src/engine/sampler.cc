#include "muxserve/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace muxserve::engine {

int32_t Sampler::Sample(std::span<const float> logits, const SamplingParams& params,
                        std::mt19937_64& rng) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  candidates_.clear();
  for (int64_t i = 0; i < vocab; ++i) {
    candidates_.emplace_back(logits[i] / params.temperature, static_cast<int32_t>(i));
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
  int64_t keep = vocab;
  if (params.top_k > 0 && params.top_k < vocab) {
    keep = params.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(),
                      by_logit);
    candidates_.resize(keep);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, so the first is the maximum).
  const float max_logit = candidates_.front().first;
  double total = 0;
  for (auto& [value, id] : candidates_) {
    value = std::exp(value - max_logit);
    total += value;
  }
  // Nucleus: the smallest prefix whose probability reaches top_p.
  if (params.top_p < 1.0f) {
    double cumulative = 0;
    int64_t cut = 0;
    while (cut < keep) {
      cumulative += candidates_[cut].first / total;
      ++cut;
      if (cumulative >= params.top_p) break;
    }
    candidates_.resize(cut);
    total = 0;
    for (const auto& [value, id] : candidates_) total += value;
  }
  std::uniform_real_distribution<double> uniform(0.0, total);
  double target = uniform(rng);
  for (const auto& [value, id] : candidates_) {
    target -= value;
    if (target <= 0) return id;
  }
  return candidates_.back().second;
}

}  // namespace muxserve::engine
