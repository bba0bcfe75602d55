#include "device.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/runtime/device.h"
#if MUXSERVE_WITH_CUDA
#include "muxserve/runtime/check.h"
#endif
#include "spdlog/spdlog.h"

namespace muxserve::profiler {

absl::Status Lane::Step(const runtime::SmPartition* partition, const engine::StepPlan& plan,
                        const kernels::PagedKv& kv) {
#if MUXSERVE_WITH_CUDA
  if (cuda_ != nullptr) RETURN_IF_ERROR(cuda_->UsePartition(partition));
#else
  (void)partition;
#endif
  greedy_.assign(plan.logit_rows.size(), engine::RowSampling{});
  return model_->Sample(plan, kv, greedy_, &tokens_);
}

absl::StatusOr<std::unique_ptr<Device>> Device::Create(config::Backend backend,
                                                       config::PartitionBackend partitions,
                                                       int device, int64_t cpu_threads,
                                                       const std::vector<double>& sm_fractions) {
  std::unique_ptr<Device> out(new Device());
  out->backend_ = backend;
  out->device_ = device;
  if (backend == config::Backend::kCpu) {
    out->ops_ = engine::MakeCpuOps(cpu_threads);
    out->places_ = {Place{.sm_fraction = 1.0, .label = "cpu"}};
    out->description_ = cpu_threads > 0 ? absl::StrCat("CPU backend (", cpu_threads, " threads)")
                                        : "CPU backend (all cores)";
    return out;
  }
#if MUXSERVE_WITH_CUDA
  ASSIGN_OR_RETURN(std::vector<runtime::DeviceInfo> devices, runtime::ListCudaDevices());
  if (device < 0 || device >= static_cast<int>(devices.size())) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " does not exist (", devices.size(), " visible)"));
  }
  const runtime::DeviceInfo& info = devices[device];
  ASSIGN_OR_RETURN(std::unique_ptr<engine::CudaOps> cuda,
                   engine::MakeCudaOps({.device = device, .kernels = {}}));
  out->ops_ = std::move(cuda);
  // Split 0 is the whole GPU; each share below it is a split of its SMs and the rest.
  std::vector<std::vector<int>> splits = {{0}};
  for (double fraction : sm_fractions) {
    const int sms = runtime::RoundSms(fraction * info.sm_count);
    if (sms < info.sm_count) splits.push_back({sms, 0});
  }
  const bool whole_asked = splits.size() - 1 < sm_fractions.size();
  ASSIGN_OR_RETURN(out->partition_set_,
                   runtime::PartitionSet::Create(partitions, device, std::move(splits)));
  const runtime::PartitionSet& set = *out->partition_set_;
  out->partitioned_ = set.backend() != config::PartitionBackend::kNone;
  for (int split = 1; out->partitioned_ && split < set.num_splits(); ++split) {
    const runtime::SmPartition* part = set.split(split)[0];
    const double fraction = static_cast<double>(part->sm_count()) / set.device_sm_count();
    if (!out->places_.empty() && fraction <= out->places_.back().sm_fraction + 1e-9) {
      continue;  // two shares rounded to the same SMs
    }
    out->places_.push_back({.sm_fraction = fraction,
                            .label = part->label(),
                            .partition = part,
                            .rest = set.split(split)[1]});
  }
  if (whole_asked || !out->partitioned_) {
    // Whole-GPU jobs run where the engine runs them: on split 0.
    out->places_.push_back(
        {.sm_fraction = 1.0, .label = set.split(0)[0]->label(), .partition = set.split(0)[0]});
  }
  out->description_ =
      absl::StrCat(info.name, " (", info.sm_count, " SMs), ",
                   AsAbsl(config::PartitionBackendName(set.backend())), " partitions");
  return out;
#else
  (void)partitions;
  (void)sm_fractions;
  return absl::FailedPreconditionError(
      "this build has no CUDA backend; profile with --backend cpu");
#endif
}

Device::~Device() {
#if MUXSERVE_WITH_CUDA
  // Partitions go with this object: leave none current on this thread.
  if (partition_set_ != nullptr) {
    if (absl::Status left = runtime::LeavePartitions(); !left.ok()) {
      spdlog::warn("profiler: {}", left.ToString());
    }
  }
#endif
}

DType Device::dtype() const { return ops_->dtype(); }

absl::StatusOr<int64_t> Device::FreeBytes() const {
#if MUXSERVE_WITH_CUDA
  if (backend_ == config::Backend::kCuda) {
    size_t free = 0, total = 0;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free, &total));
    return static_cast<int64_t>(free);
  }
#endif
  return std::numeric_limits<int64_t>::max();
}

absl::StatusOr<std::unique_ptr<Lane>> Device::MakeLane(const model::ModelSpec& spec,
                                                       const model::Weights* weights,
                                                       const Lane* share_with,
                                                       int64_t max_step_tokens,
                                                       int64_t max_step_seqs) {
  auto lane = std::make_unique<Lane>();
  engine::Ops* ops = ops_.get();
#if MUXSERVE_WITH_CUDA
  if (backend_ == config::Backend::kCuda) {
    ASSIGN_OR_RETURN(std::unique_ptr<engine::CudaOps> cuda,
                     engine::MakeCudaOps({.device = device_, .kernels = {}}));
    lane->cuda_ = cuda.get();
    ops = cuda.get();
    lane->own_ops_ = std::move(cuda);
  }
#endif
  if (share_with != nullptr) {
    ASSIGN_OR_RETURN(lane->model_,
                     share_with->model_->ShareWeights(ops, max_step_tokens, max_step_seqs));
  } else {
    ASSIGN_OR_RETURN(lane->model_, engine::Transformer::Load(spec, *weights, ops, max_step_tokens,
                                                             max_step_seqs));
  }
#if MUXSERVE_WITH_CUDA
  if (lane->cuda_ != nullptr) {
    // Streams and handles of every partition it may run on up front, as the engine does, then
    // the primary context again on this thread.
    for (const Place& place : places_) {
      for (const runtime::SmPartition* partition : {place.partition, place.rest}) {
        if (partition != nullptr) RETURN_IF_ERROR(lane->cuda_->UsePartition(partition));
      }
    }
    RETURN_IF_ERROR(lane->cuda_->UsePartition(nullptr));
  }
#endif
  return lane;
}

absl::StatusOr<engine::Buffer> Device::AllocateZeroed(int64_t bytes) {
  ASSIGN_OR_RETURN(engine::Buffer buffer, ops_->Allocate(bytes));
#if MUXSERVE_WITH_CUDA
  if (backend_ == config::Backend::kCuda) {
    CUDA_RETURN_IF_ERROR(cudaMemset(buffer.get(), 0, static_cast<size_t>(bytes)));
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return buffer;
  }
#endif
  std::memset(buffer.get(), 0, static_cast<size_t>(bytes));
  return buffer;
}

}  // namespace muxserve::profiler
