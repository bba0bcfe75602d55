// Token sampling on the host: greedy, temperature, top-k, top-p, seeded.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "muxserve/engine/request.h"

namespace muxserve::engine {

class Sampler {
 public:
  // Picks the next token from one row of logits [vocab]. Greedy (temperature 0) ignores `rng`.
  int32_t Sample(std::span<const float> logits, const SamplingParams& params,
                 std::mt19937_64& rng);

 private:
  std::vector<std::pair<float, int32_t>> candidates_;  // reused between calls
};

}  // namespace muxserve::engine
