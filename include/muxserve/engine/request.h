// A generation request as the engine sees it, and the sink its results leave through.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "muxserve/common/clock.h"

namespace muxserve::engine {

struct SamplingParams {
  int32_t max_tokens = 16;
  float temperature = 1.0f;  // 0 means greedy
  float top_p = 1.0f;        // (0, 1]
  int32_t top_k = 0;         // 0 means no limit
  std::optional<uint64_t> seed{};
  std::vector<std::string> stop{};       // stop strings; the match is not sent to the client
  std::vector<int32_t> stop_token_ids{};  // generated, then finish with reason stop
  bool ignore_eos = false;
};

enum class FinishReason { kStop, kLength, kAbort, kError };
std::string_view FinishReasonName(FinishReason reason);  // "stop", "length", "abort", "error"

struct StreamDelta {
  std::string text{};              // new complete UTF-8 text (may be empty while held back)
  std::vector<int32_t> token_ids{};  // tokens sampled since the last delta
};

struct FinishInfo {
  FinishReason reason = FinishReason::kStop;
  absl::Status error{};  // set when reason is kError (e.g. the deadline passed)
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// Results of one request. Called from the engine thread: implementations must not block.
// OnFinish is called exactly once, last.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnDelta(StreamDelta delta) = 0;
  virtual void OnFinish(const FinishInfo& info) = 0;
};

// Shared between the client side (gRPC reactor, Abort RPC) and the engine.
struct CancelFlag {
  std::atomic<bool> cancelled{false};
  void Cancel() { cancelled.store(true, std::memory_order_relaxed); }
  bool IsCancelled() const { return cancelled.load(std::memory_order_relaxed); }
};

struct Request {
  std::string id;
  std::string model;
  std::vector<int32_t> prompt_tokens;
  SamplingParams sampling;
  std::optional<SteadyTime> deadline;  // finishes with kError DEADLINE_EXCEEDED once passed
  std::shared_ptr<RequestSink> sink;
  std::shared_ptr<CancelFlag> cancel = std::make_shared<CancelFlag>();
  SteadyTime arrival{};  // set by Submit when left empty
};

}  // namespace muxserve::engine
