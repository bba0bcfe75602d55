#include "muxserve/runtime/communicator.h"

#include <algorithm>
#include <barrier>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

#if MUXSERVE_WITH_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "muxserve/runtime/check.h"
#endif

namespace muxserve::runtime {
namespace {

// What the ranks of one in-process group share: each rank's buffer of the call in progress.
struct InProcessGroup {
  explicit InProcessGroup(int size) : barrier(size), buffers(size), counts(size) {}
  std::barrier<> barrier;
  std::vector<float*> buffers;
  std::vector<int64_t> counts;
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<InProcessGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(group_->buffers.size()); }

  absl::Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) override {
    // Every rank sees the same arguments, so every rank takes the same branch here.
    if (dtype != DType::kFloat32 || stream != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "in-process all-reduce sums float32 host memory only, not ", AsAbsl(DTypeName(dtype)),
          stream != nullptr ? " on a stream" : ""));
    }
    InProcessGroup& group = *group_;
    group.buffers[rank_] = static_cast<float*>(data);
    group.counts[rank_] = count;
    group.barrier.arrive_and_wait();
    const bool same_count = std::all_of(group.counts.begin(), group.counts.end(),
                                        [&](int64_t c) { return c == group.counts[0]; });
    if (same_count) {
      // Each rank sums its own slice of the elements over all ranks, in rank order, and writes
      // the sum into every rank's buffer: slices are disjoint, so no element is read by one
      // rank while another writes it.
      const int n = size();
      const int64_t begin = count * rank_ / n;
      const int64_t end = count * (rank_ + 1) / n;
      for (int64_t i = begin; i < end; ++i) {
        float sum = 0;
        for (int r = 0; r < n; ++r) sum += group.buffers[r][i];
        for (int r = 0; r < n; ++r) group.buffers[r][i] = sum;
      }
    }
    // Nobody returns (and reuses its buffer) before every slice is written.
    group.barrier.arrive_and_wait();
    if (!same_count) {
      return absl::InvalidArgumentError(
          absl::StrCat("all-reduce: the ranks passed different element counts (rank ", rank_,
                       ": ", count, ")"));
    }
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<InProcessGroup> group_;
  int rank_;
};

#if MUXSERVE_WITH_CUDA
class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ~NcclCommunicator() override { CUDA_LOG_IF_ERROR(ncclCommDestroy(comm_)); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) override {
    ncclDataType_t type = ncclFloat32;
    switch (dtype) {
      case DType::kFloat32:
        type = ncclFloat32;
        break;
      case DType::kBFloat16:
        type = ncclBfloat16;
        break;
      case DType::kFloat16:
        type = ncclFloat16;
        break;
    }
    CUDA_RETURN_IF_ERROR(ncclAllReduce(data, data, static_cast<size_t>(count), type, ncclSum,
                                       comm_, static_cast<cudaStream_t>(stream)));
    return absl::OkStatus();
  }

 private:
  ncclComm_t comm_;
  int rank_;
  int size_;
};
#endif

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeInProcessCommunicators(int size) {
  auto group = std::make_shared<InProcessGroup>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int rank = 0; rank < size; ++rank) {
    out.push_back(std::make_unique<InProcessCommunicator>(group, rank));
  }
  return out;
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(
    std::span<const int> devices) {
#if MUXSERVE_WITH_CUDA
  const int size = static_cast<int>(devices.size());
  if (size < 1) return absl::InvalidArgumentError("NCCL communicators need at least one device");
  std::vector<ncclComm_t> comms(size);
  std::vector<int> device_list(devices.begin(), devices.end());
  CUDA_RETURN_IF_ERROR(ncclCommInitAll(comms.data(), size, device_list.data()));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int rank = 0; rank < size; ++rank) {
    out.push_back(std::make_unique<NcclCommunicator>(comms[rank], rank, size));
  }
  return out;
#else
  (void)devices;
  return absl::UnimplementedError("NCCL communicators need a CUDA build");
#endif
}

}  // namespace muxserve::runtime
