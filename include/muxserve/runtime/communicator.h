// Collectives between the ranks of a tensor-parallel unit. Two implementations behind one
// interface: NCCL between the GPUs of one process (a thread drives each GPU), and an in-process
// one between threads over host memory, so the sharded forward pass runs and is tested on the CPU
// backend exactly as it runs on GPUs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"

namespace muxserve::runtime {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `count` elements of `data` over the ranks, in place; every rank ends with the same bits.
  // Every rank calls it with the same count and dtype, each from its own thread. `stream` is the
  // cudaStream_t the GPU data is ordered on (NCCL: the call is enqueued and returns at once), or
  // nullptr for host memory (in-process: returns when the sum is in `data`).
  [[nodiscard]] virtual absl::Status AllReduceSum(void* data, int64_t count, DType dtype,
                                                  void* stream) = 0;
};

// `size` communicators over host memory, one per rank (the rank is its index), for threads of
// one process. float32 only (the CPU backend's dtype). The sum runs in rank order, so every rank
// gets identical bits and the result does not depend on thread timing.
std::vector<std::unique_ptr<Communicator>> MakeInProcessCommunicators(int size);

// One NCCL communicator per device (CUDA runtime ordinals, rank = index), made together in this
// process (ncclCommInitAll). Only in CUDA builds; UNIMPLEMENTED elsewhere.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(
    std::span<const int> devices);

}  // namespace muxserve::runtime
