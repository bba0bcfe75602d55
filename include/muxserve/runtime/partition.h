// SM partitions of one GPU: the sets of SMs that jobs run on, so that one LLM's prefill and
// another's decode run at the same time without competing for the same SMs.
//
// Backends (config::PartitionBackend):
//   green  CUDA green contexts: exclusive, exact SM sets (rounded to the device's granularity).
//   mps    contexts with an SM-count execution affinity inside this process; needs an MPS control
//          daemon (Create refuses without one, printing the commands that start it). The SM
//          count is a cap, not an exclusive set.
//   none   every partition is the whole GPU (the primary context).
// Memory allocated with cudaMalloc in the primary context is usable from every partition.
//
// Making a partition costs about 2 ms with green, about 150 ms with mps (docs/partitions.md), so
// a unit makes a palette of them at start-up and picks one per job. Streams from CreateStream
// must be destroyed before their PartitionSet. Only in CUDA builds (MUXSERVE_WITH_CUDA); elsewhere
// SmPartition is declared only.
#pragma once

#if MUXSERVE_WITH_CUDA

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/config/config.h"

namespace muxserve::runtime {

// SM counts go to green contexts in steps of this many (Hopper's granularity).
inline constexpr int kSmStep = 8;

// `sms` rounded to whole steps of kSmStep, at least one.
inline int RoundSms(double sms) {
  return std::max(kSmStep, static_cast<int>(std::lround(sms / kSmStep)) * kSmStep);
}

// Where a stream's blocks stand in the block scheduler's order when streams share SMs (CUDA:
// lower values run first). Normal is the default priority; Raised(k) is k levels below the
// device's greatest, kept above the default while the device has levels (H100/H200: greatest -5,
// default 0, so Raised(0..4) are distinct and Raised(5 and more) equal Raised(4)).
struct StreamPriority {
  static constexpr StreamPriority Normal() { return {}; }
  static constexpr StreamPriority Raised(int rank) { return {.raised_rank = std::max(rank, 0)}; }
  // The value for a context whose priorities range from `greatest` to `least` (greatest <= least).
  int CudaValue(int least, int greatest) const {
    if (raised_rank < 0) return 0;
    return std::min(greatest + raised_rank, std::max(greatest, least - 1));
  }
  bool operator==(const StreamPriority&) const = default;
  int raised_rank = -1;  // -1: normal
};

class SmPartition {
 public:
  virtual ~SmPartition() = default;
  // Unique within its PartitionSet, dense from 0 (usable as an index).
  virtual int id() const = 0;
  // SMs the partition's work may run on: exact for green, a cap for mps, all for none.
  virtual int sm_count() const = 0;
  // e.g. "green:96", "mps:40", "none:132".
  virtual std::string label() const = 0;
  // Makes the partition's context current on the calling thread: cuBLAS handles created and
  // streams made after this belong to it.
  [[nodiscard]] virtual absl::Status Enter() const = 0;
  // A new non-blocking stream whose kernels run on this partition's SMs; the caller destroys it
  // with cudaStreamDestroy, at `priority`.
  virtual absl::StatusOr<cudaStream_t> CreateStream(StreamPriority priority) const = 0;
};

// Makes no partition current on the calling thread, so that CUDA runtime calls there use the
// device's primary context again (a partition's context must not outlive its PartitionSet on a
// thread that goes on calling CUDA).
[[nodiscard]] absl::Status LeavePartitions();

class PartitionSet {
 public:
  // Makes every split on `device` (a CUDA runtime ordinal). Each split is a list of SM counts of
  // partitions that are disjoint from each other (sum at most the device's SMs); a count <= 0
  // means "the SMs the earlier partitions of this split left" (last entry only). A split {0} is
  // the whole GPU. Partitions of different splits may overlap. With kNone every partition is the whole GPU;
  // kAuto is resolved to green where supported, else none.
  // Errors: FAILED_PRECONDITION (no device; green unsupported by the driver; mps without a
  // control daemon, with the commands to start one), INVALID_ARGUMENT (a split asks for more
  // SMs than the device has, naming it).
  static absl::StatusOr<std::unique_ptr<PartitionSet>> Create(
      config::PartitionBackend backend, int device, const std::vector<std::vector<int>>& splits);

  virtual ~PartitionSet() = default;
  // The backend actually used (never kAuto).
  virtual config::PartitionBackend backend() const = 0;
  virtual int device_sm_count() const = 0;
  virtual int num_splits() const = 0;
  // The partitions of split `split`, in the order asked for.
  virtual const std::vector<const SmPartition*>& split(int split) const = 0;
  // Every partition; partition(i)->id() == i.
  virtual int size() const = 0;
  virtual const SmPartition* partition(int id) const = 0;
  // Milliseconds Create spent making partitions (their contexts and streams), for the logs.
  virtual double creation_ms() const = 0;
};

}  // namespace muxserve::runtime

#else

namespace muxserve::runtime {
class SmPartition;  // declared only, so that code shared with CPU builds can hold null pointers
}  // namespace muxserve::runtime

#endif  // MUXSERVE_WITH_CUDA
