// What the engine reports as it serves, for metrics. The server implements it with
// prometheus-cpp; tests may record calls. Called from the engine thread; must not block.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "muxserve/common/clock.h"
#include "muxserve/engine/request.h"

namespace muxserve::engine {

struct LlmState {
  std::string model{};
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_quota = 0;  // current, after adaptation
  int64_t kv_blocks_total = 0;  // of the unit's pool
  // Fairness: the LLM's share of the tokens served (prompt tokens computed the first time, and
  // generated tokens) over its share of the tokens asked for (prompt + max_tokens), both
  // decayed over about a minute; 1 is a fair share, 0 when nothing was asked.
  double fairness = 0;
};

struct JobReport {
  std::string model{};
  bool prefill = false;
  std::string partition{};  // e.g. "green:76"; "gpu" without partitions, "cpu" on the CPU
  int64_t tokens = 0;
  SteadyTime started{};          // handed to its worker
  SteadyTime ended{};            // results on the host
  double seconds = 0;            // ended - started
  int64_t recomputed_tokens = 0;  // of sequences preempted earlier, computed again
  bool repartitioned = false;  // ran on other SMs than this lane's previous job
};

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
  virtual void OnLlmState(const LlmState& state) = 0;
  // Each job when it ends.
  virtual void OnJob(const JobReport& job) = 0;
};

}  // namespace muxserve::engine
