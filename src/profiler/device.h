// What the profiler runs steps on: the CPU backend, or one GPU with a palette of SM partitions
// (one per measured share, with the rest of the SMs beside it for interference runs). Lanes are
// set up as the engine's (engine/unit_engine.cc): each its own CudaOps and Transformer, the
// decode lane sharing the prefill lane's weights, steps drawing greedy tokens on the backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/paged_kv.h"
#include "muxserve/common/dtype.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/cuda_ops.h"  // empty without CUDA
#include "muxserve/engine/ops.h"
#include "muxserve/engine/step_plan.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/partition.h"  // only SmPartition declared without CUDA


namespace muxserve::profiler {

// A share of the device's SMs that a job runs on.
struct Place {
  double sm_fraction = 1.0;  // what the partition really got, as a fraction of the SMs
  std::string label{};       // "green:32", "none:132", "cpu"
  const runtime::SmPartition* partition = nullptr;  // null: the CPU
  const runtime::SmPartition* rest = nullptr;       // the complementary SMs; null when whole
};

// One job slot: a backend instance of its own (CUDA: stream, cuBLAS handles, decode graphs per
// partition) and a Transformer on it.
class Lane {
 public:
  // Runs one step on `partition` (null: the whole device) and returns when it is done.
  [[nodiscard]] absl::Status Step(const runtime::SmPartition* partition,
                                  const engine::StepPlan& plan, const kernels::PagedKv& kv);

 private:
  friend class Device;
  std::unique_ptr<engine::Ops> own_ops_;  // CUDA; CPU lanes share the device's ops
#if MUXSERVE_WITH_CUDA
  engine::CudaOps* cuda_ = nullptr;
#endif
  std::unique_ptr<engine::Transformer> model_;
  std::vector<engine::RowSampling> greedy_;
  std::vector<int32_t> tokens_;
};

class Device {
 public:
  // `backend` is resolved (kCpu or kCuda); `sm_fractions` increase. On a GPU every share gets a
  // partition of that many SMs (rounded as the engine rounds) and the rest beside it; shares
  // that round to the same SM count are measured once, and to all SMs as the whole GPU.
  // Without SM partitions (the CPU backend, or partitions `none`) only the whole device is
  // measured.
  static absl::StatusOr<std::unique_ptr<Device>> Create(config::Backend backend,
                                                        config::PartitionBackend partitions,
                                                        int device, int64_t cpu_threads,
                                                        const std::vector<double>& sm_fractions);
  ~Device();

  // The shares to measure, increasing.
  const std::vector<Place>& places() const { return places_; }
  // Whether two lanes run at the same time on disjoint SMs (interference can be measured).
  bool partitioned() const { return partitioned_; }
  // "NVIDIA H200 (132 SMs), green partitions" or "CPU backend (2 threads)".
  const std::string& description() const { return description_; }
  // The dtype weights, activations and KV blocks are kept in on this backend.
  DType dtype() const;
  // Bytes the device can still allocate (the CPU: no limit of its own).
  absl::StatusOr<int64_t> FreeBytes() const;

  // A lane with `weights` (drawn on the backend when random), or sharing `share_with`'s.
  absl::StatusOr<std::unique_ptr<Lane>> MakeLane(const model::ModelSpec& spec,
                                                 const model::Weights* weights,
                                                 const Lane* share_with, int64_t max_step_tokens,
                                                 int64_t max_step_seqs);
  // Zeroed backend memory (KV blocks whose contents only need to be finite).
  absl::StatusOr<engine::Buffer> AllocateZeroed(int64_t bytes);

 private:
  Device() = default;

  config::Backend backend_ = config::Backend::kCpu;
  int device_ = 0;
  // The CPU backend's ops, which its lanes share; on a GPU, ops for allocations.
  std::unique_ptr<engine::Ops> ops_;
#if MUXSERVE_WITH_CUDA
  std::unique_ptr<runtime::PartitionSet> partition_set_;
#endif
  std::vector<Place> places_;
  bool partitioned_ = false;
  std::string description_;
};

}  // namespace muxserve::profiler
