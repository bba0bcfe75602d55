// What the engine reports as it serves, for metrics. The server implements it with
// prometheus-cpp; tests may record calls. Called from the engine thread; must not block.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "muxserve/engine/request.h"

namespace muxserve::engine {

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // A request's first token: time since arrival, time spent waiting before its prefill began.
  virtual void OnFirstToken(const std::string& model, int32_t prompt_tokens, double ttft_seconds,
                            double queue_seconds) = 0;
  // Tokens after the first, with the gap before each (inter-token latency).
  virtual void OnTokens(const std::string& model, std::span<const double> gaps_seconds) = 0;
  virtual void OnFinished(const std::string& model, FinishReason reason, double e2e_seconds) = 0;
  // After each scheduling step, the state of every LLM of the unit.
  virtual void OnLlmState(const std::string& model, int64_t running, int64_t waiting,
                          double kv_usage_fraction) = 0;
};

}  // namespace muxserve::engine
