// One unit: a device (or mesh) and the LLMs co-located on it, with their shared head-wise KV
// pool, the scheduler and the loop thread that runs their jobs. Submit is the only way in;
// results leave through each request's sink.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/common/clock.h"
#include "muxserve/common/dtype.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/observer.h"
#include "muxserve/engine/request.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"

namespace muxserve::engine {

struct UnitOptions {
  std::string name = "unit0";
  config::Backend backend = config::Backend::kCpu;
  int64_t cpu_threads = 0;
  config::KvCacheConfig kv_cache{};
  config::SchedulerConfig scheduler{};
  // Tensor parallelism: every LLM of the unit is split over this many ranks (1, 2, 4 or 8),
  // each run by a thread of its own: on the CUDA backend one GPU each (`devices`, joined by
  // NCCL), on the CPU backend ranks sharing the cores (joined in process).
  int tensor_parallel = 1;
  // CUDA: the unit's GPUs (runtime ordinals), one per rank, and how their SMs are split between
  // jobs (see runtime/partition.h; the same palette on every GPU).
  std::vector<int> devices = {0};
  config::PartitionBackend partitions = config::PartitionBackend::kAuto;
  // Spatial mode: each LLM's share of the SMs by name; LLMs not named split what is left in
  // proportion to their rate.
  std::vector<std::pair<std::string, double>> spatial_sm_shares{};
  // scheduler.decode_priority by_rate: each LLM's rank by expected rate (0: the most requested),
  // by name; LLMs not named rank below all named ones.
  std::vector<std::pair<std::string, int>> rate_ranks{};
  int64_t max_queued_requests = 1024;  // per LLM
  Clock* clock = Clock::Real();
};

// Everything needed to add one LLM to a unit.
struct LlmSetup {
  std::string name{};
  std::filesystem::path model_dir{};
  model::ModelSpec spec{};
  std::shared_ptr<const model::Tokenizer> tokenizer{};
  // Compute dtype: on the CUDA backend the element type of the LLM's weights, activations and KV
  // (bfloat16 or float16; float32 is refused); the CPU backend computes in float32 regardless.
  DType dtype = DType::kFloat32;
  int64_t max_context = 0;
  double rate = 1.0;  // expected requests/s: the initial KV quota follows rate x KV bytes/token
  // Set: the weights are drawn on the backend with this seed (model::Weights::Random) instead
  // of read from model_dir's safetensors (synthetic models with `weights: device`).
  std::optional<uint64_t> random_weights_seed{};
};

struct LlmStats {
  std::string name{};
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_quota = 0;
  int64_t kv_blocks_total = 0;  // of the whole pool
  int64_t requests_finished = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t recomputed_tokens = 0;
  double fairness = 0;  // see LlmState
};

class UnitEngine {
 public:
  static absl::StatusOr<std::unique_ptr<UnitEngine>> Create(const UnitOptions& options,
                                                            EngineObserver* observer);
  ~UnitEngine();  // aborts whatever is still in flight and joins the loop
  UnitEngine(const UnitEngine&) = delete;
  UnitEngine& operator=(const UnitEngine&) = delete;

  // Loads the weights on the unit's backend (in the calling thread; the loop keeps serving the
  // LLMs it already has), then makes the LLM available to Submit.
  [[nodiscard]] absl::Status AddLlm(const LlmSetup& setup);

  // Validates and queues. Errors: NOT_FOUND (no such LLM in this unit), INVALID_ARGUMENT
  // (naming the field), RESOURCE_EXHAUSTED (queue full), UNAVAILABLE (draining). On OK the sink
  // receives OnFinish exactly once.
  [[nodiscard]] absl::Status Submit(Request request);

  // Stops accepting, lets in-flight requests finish for up to `grace`, aborts the rest, and
  // returns once every sink has had OnFinish.
  void Drain(Duration grace);

  std::vector<LlmStats> Stats() const;
  const std::string& name() const;

 private:
  class Impl;
  explicit UnitEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Checks a request against an LLM's limits: INVALID_ARGUMENT naming the field otherwise.
[[nodiscard]] absl::Status ValidateRequest(const Request& request, const model::ModelSpec& spec,
                                           int64_t max_context);

}  // namespace muxserve::engine
