#include "muxserve/runtime/partition.h"

#include <cuda.h>

#include <chrono>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "muxserve/common/status.h"
#include "muxserve/runtime/check.h"
#include "muxserve/runtime/driver_api.h"
#include "spdlog/spdlog.h"

namespace muxserve::runtime {
namespace {

using config::PartitionBackend;

// The driver functions this module calls, looked up at run time (driver_api.h). Each field is
// named after its function, so that `cuCtxCreate` resolves to the same versioned name
// (cuCtxCreate_v4) in the field, its type and the header's macros, while the symbol looked up is
// the base name the driver's entry-point table knows.
struct CoreDriver {
  decltype(::cuDeviceGet)* cuDeviceGet = nullptr;
  decltype(::cuDevicePrimaryCtxRetain)* cuDevicePrimaryCtxRetain = nullptr;
  decltype(::cuDevicePrimaryCtxRelease)* cuDevicePrimaryCtxRelease = nullptr;
  decltype(::cuCtxSetCurrent)* cuCtxSetCurrent = nullptr;
  decltype(::cuCtxPushCurrent)* cuCtxPushCurrent = nullptr;
  decltype(::cuCtxPopCurrent)* cuCtxPopCurrent = nullptr;
  decltype(::cuStreamCreateWithPriority)* cuStreamCreateWithPriority = nullptr;
  decltype(::cuCtxGetStreamPriorityRange)* cuCtxGetStreamPriorityRange = nullptr;
};

struct GreenDriver {
  decltype(::cuDeviceGetDevResource)* cuDeviceGetDevResource = nullptr;
  decltype(::cuDevSmResourceSplitByCount)* cuDevSmResourceSplitByCount = nullptr;
  decltype(::cuDevResourceGenerateDesc)* cuDevResourceGenerateDesc = nullptr;
  decltype(::cuGreenCtxCreate)* cuGreenCtxCreate = nullptr;
  decltype(::cuGreenCtxDestroy)* cuGreenCtxDestroy = nullptr;
  decltype(::cuGreenCtxGetDevResource)* cuGreenCtxGetDevResource = nullptr;
  decltype(::cuCtxFromGreenCtx)* cuCtxFromGreenCtx = nullptr;
  decltype(::cuGreenCtxStreamCreate)* cuGreenCtxStreamCreate = nullptr;
};

struct MpsDriver {
  decltype(::cuDeviceGetExecAffinitySupport)* cuDeviceGetExecAffinitySupport = nullptr;
  decltype(::cuCtxCreate)* cuCtxCreate = nullptr;
  decltype(::cuCtxDestroy)* cuCtxDestroy = nullptr;
  decltype(::cuCtxGetExecAffinity)* cuCtxGetExecAffinity = nullptr;
};

#define MUXSERVE_LOAD_DRIVER_FUNCTION(table, function) \
  ASSIGN_OR_RETURN((table).function, DriverFunction<decltype(::function)>(#function))

absl::StatusOr<CoreDriver> LoadCoreDriver() {
  CoreDriver driver;
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDeviceGet);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDevicePrimaryCtxRetain);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDevicePrimaryCtxRelease);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxSetCurrent);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxPushCurrent);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxPopCurrent);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuStreamCreateWithPriority);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxGetStreamPriorityRange);
  return driver;
}

absl::StatusOr<GreenDriver> LoadGreenDriver() {
  GreenDriver driver;
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDeviceGetDevResource);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDevSmResourceSplitByCount);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDevResourceGenerateDesc);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuGreenCtxCreate);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuGreenCtxDestroy);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuGreenCtxGetDevResource);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxFromGreenCtx);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuGreenCtxStreamCreate);
  return driver;
}

absl::StatusOr<MpsDriver> LoadMpsDriver() {
  MpsDriver driver;
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuDeviceGetExecAffinitySupport);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxCreate);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxDestroy);
  MUXSERVE_LOAD_DRIVER_FUNCTION(driver, cuCtxGetExecAffinity);
  return driver;
}

#undef MUXSERVE_LOAD_DRIVER_FUNCTION

constexpr std::string_view kStartMps =
    "start the MPS control daemon first, and run muxserve with the same two variables set: "
    "export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog; "
    "mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY; nvidia-cuda-mps-control -d "
    "(stop it with: echo quit | nvidia-cuda-mps-control)";

std::string SplitName(int index, const std::vector<int>& split) {
  return absl::StrCat("split ", index, " {", absl::StrJoin(split, ", "), "}");
}

// One partition: a context (green, MPS-limited or primary) that the partition may own.
class Partition final : public SmPartition {
 public:
  Partition(const CoreDriver* core, int id, PartitionBackend backend, CUcontext context)
      : core_(core), id_(id), backend_(backend), context_(context) {}

  ~Partition() override {
    if (green_ != nullptr) CUDA_LOG_IF_ERROR(green_driver_->cuGreenCtxDestroy(green_));
    if (owned_context_ != nullptr) CUDA_LOG_IF_ERROR(mps_driver_->cuCtxDestroy(owned_context_));
  }

  Partition(const Partition&) = delete;
  Partition& operator=(const Partition&) = delete;

  void OwnGreen(const GreenDriver* driver, CUgreenCtx green) {
    green_driver_ = driver;
    green_ = green;
  }
  void OwnContext(const MpsDriver* driver) {
    mps_driver_ = driver;
    owned_context_ = context_;
  }
  void set_context(CUcontext context) { context_ = context; }
  void set_sm_count(int sm_count) { sm_count_ = sm_count; }

  int id() const override { return id_; }
  int sm_count() const override { return sm_count_; }
  std::string label() const override {
    return absl::StrCat(AsAbsl(config::PartitionBackendName(backend_)), ":", sm_count_);
  }

  absl::Status Enter() const override {
    CUDA_RETURN_IF_ERROR(core_->cuCtxSetCurrent(context_));
    return absl::OkStatus();
  }

  absl::StatusOr<cudaStream_t> CreateStream(StreamPriority priority) const override {
    // A stream belongs to the current context: make ours current only for the calls, so that the
    // caller's thread keeps its own.
    CUDA_RETURN_IF_ERROR(core_->cuCtxPushCurrent(context_));
    CUstream stream = nullptr;
    int least = 0;
    int greatest = 0;
    absl::Status created = CUDA_STATUS(core_->cuCtxGetStreamPriorityRange(&least, &greatest));
    const int value = priority.CudaValue(least, greatest);
    if (created.ok() && green_ != nullptr) {
      created = CUDA_STATUS(
          green_driver_->cuGreenCtxStreamCreate(&stream, green_, CU_STREAM_NON_BLOCKING, value));
    } else if (created.ok()) {
      created = CUDA_STATUS(
          core_->cuStreamCreateWithPriority(&stream, CU_STREAM_NON_BLOCKING, value));
    }
    CUcontext popped = nullptr;
    CUDA_RETURN_IF_ERROR(core_->cuCtxPopCurrent(&popped));
    RETURN_IF_ERROR(created);
    return stream;
  }

 private:
  const CoreDriver* core_;
  const GreenDriver* green_driver_ = nullptr;
  const MpsDriver* mps_driver_ = nullptr;
  int id_;
  PartitionBackend backend_;
  CUcontext context_;
  CUgreenCtx green_ = nullptr;
  CUcontext owned_context_ = nullptr;
  int sm_count_ = 0;
};

class PartitionSetImpl final : public PartitionSet {
 public:
  PartitionSetImpl(PartitionBackend backend, CoreDriver core, CUdevice device, int device_sm_count)
      : backend_(backend), core_(core), device_(device), device_sm_count_(device_sm_count) {}

  ~PartitionSetImpl() override {
    // Partitions first: green contexts hold on to the resources of the scaffolds they were split
    // from, and every context needs the primary context alive.
    partitions_.clear();
    for (CUgreenCtx scaffold : scaffolds_) CUDA_LOG_IF_ERROR(green_.cuGreenCtxDestroy(scaffold));
    if (primary_ != nullptr) CUDA_LOG_IF_ERROR(core_.cuDevicePrimaryCtxRelease(device_));
  }

  PartitionSetImpl(const PartitionSetImpl&) = delete;
  PartitionSetImpl& operator=(const PartitionSetImpl&) = delete;

  absl::Status Build(const std::vector<std::vector<int>>& splits) {
    const auto start = std::chrono::steady_clock::now();
    // Retaining the primary context initialises it: green contexts are cheaper to make with it
    // active, and memory the runtime allocates lives in it.
    CUDA_RETURN_IF_ERROR(core_.cuDevicePrimaryCtxRetain(&primary_, device_));
    if (backend_ == PartitionBackend::kGreen) {
      absl::StatusOr<GreenDriver> green = LoadGreenDriver();
      if (!green.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "green contexts need a CUDA 12.4+ driver: ", green.status().message()));
      }
      green_ = *green;
    }
    if (backend_ == PartitionBackend::kMps) {
      ASSIGN_OR_RETURN(mps_, LoadMpsDriver());
      int supported = 0;
      CUDA_RETURN_IF_ERROR(mps_.cuDeviceGetExecAffinitySupport(
          &supported, CU_EXEC_AFFINITY_TYPE_SM_COUNT, device_));
      if (supported == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the device does not support SM-count execution affinity; ", AsAbsl(kStartMps)));
      }
    }
    for (int index = 0; index < static_cast<int>(splits.size()); ++index) {
      std::vector<const SmPartition*> split(splits[index].size(), nullptr);
      absl::Status made;
      switch (backend_) {
        case PartitionBackend::kGreen:
          made = AddGreenSplit(splits[index], split);
          break;
        case PartitionBackend::kMps:
          made = AddMpsSplit(splits[index], split);
          break;
        default:
          made = AddWholeGpuSplit(split);
          break;
      }
      if (!made.ok()) return Annotate(made, SplitName(index, splits[index]));
      splits_.push_back(std::move(split));
    }
    creation_ms_ =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return absl::OkStatus();
  }

  PartitionBackend backend() const override { return backend_; }
  int device_sm_count() const override { return device_sm_count_; }
  int num_splits() const override { return static_cast<int>(splits_.size()); }
  const std::vector<const SmPartition*>& split(int split) const override { return splits_[split]; }
  int size() const override { return static_cast<int>(partitions_.size()); }
  const SmPartition* partition(int id) const override { return partitions_[id].get(); }
  double creation_ms() const override { return creation_ms_; }

 private:
  Partition* NewPartition(CUcontext context) {
    partitions_.push_back(
        std::make_unique<Partition>(&core_, static_cast<int>(partitions_.size()), backend_, context));
    return partitions_.back().get();
  }

  absl::Status AddWholeGpuSplit(std::vector<const SmPartition*>& split) {
    for (const SmPartition*& slot : split) {
      Partition* partition = NewPartition(primary_);
      partition->set_sm_count(device_sm_count_);
      slot = partition;
    }
    return absl::OkStatus();
  }

  // A green context on exactly the SMs of `resource`.
  absl::StatusOr<CUgreenCtx> MakeGreenContext(CUdevResource& resource) {
    CUdevResourceDesc desc = nullptr;
    CUDA_RETURN_IF_ERROR(green_.cuDevResourceGenerateDesc(&desc, &resource, 1));
    CUgreenCtx green = nullptr;
    CUDA_RETURN_IF_ERROR(green_.cuGreenCtxCreate(&green, desc, device_, CU_GREEN_CTX_DEFAULT_STREAM));
    return green;
  }

  absl::Status AddGreenPartition(CUdevResource& resource, const SmPartition*& slot) {
    if (resource.sm.smCount == 0) {
      return absl::InvalidArgumentError("the earlier partitions left no SMs for the rest");
    }
    ASSIGN_OR_RETURN(CUgreenCtx green, MakeGreenContext(resource));
    Partition* partition = NewPartition(nullptr);
    partition->OwnGreen(&green_, green);
    CUcontext context = nullptr;
    CUDA_RETURN_IF_ERROR(green_.cuCtxFromGreenCtx(&context, green));
    partition->set_context(context);
    partition->set_sm_count(static_cast<int>(resource.sm.smCount));
    slot = partition;
    return absl::OkStatus();
  }

  // Splits off one partition after another. The driver does not split the leftover of a split
  // again, so before each further split the leftover becomes a scaffold green context whose
  // resource is split instead; nobody runs work on scaffolds.
  absl::Status AddGreenSplit(const std::vector<int>& counts,
                             std::vector<const SmPartition*>& split) {
    CUdevResource input{};
    CUDA_RETURN_IF_ERROR(
        green_.cuDeviceGetDevResource(device_, &input, CU_DEV_RESOURCE_TYPE_SM));
    CUdevResource remaining{};
    for (size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] <= 0) {
        RETURN_IF_ERROR(AddGreenPartition(k == 0 ? input : remaining, split[k]));
        continue;
      }
      if (k > 0) {
        ASSIGN_OR_RETURN(CUgreenCtx scaffold, MakeGreenContext(remaining));
        scaffolds_.push_back(scaffold);
        CUDA_RETURN_IF_ERROR(
            green_.cuGreenCtxGetDevResource(scaffold, &input, CU_DEV_RESOURCE_TYPE_SM));
      }
      CUdevResource group{};
      unsigned int groups = 1;
      CUDA_RETURN_IF_ERROR(green_.cuDevSmResourceSplitByCount(
          &group, &groups, &input, &remaining, 0, static_cast<unsigned int>(counts[k])));
      if (groups != 1) {
        return absl::InvalidArgumentError(absl::StrCat("cannot split ", counts[k], " SMs off the ",
                                                       input.sm.smCount, " left"));
      }
      RETURN_IF_ERROR(AddGreenPartition(group, split[k]));
    }
    return absl::OkStatus();
  }

  absl::Status AddMpsSplit(const std::vector<int>& counts,
                           std::vector<const SmPartition*>& split) {
    int left = device_sm_count_;
    for (size_t k = 0; k < counts.size(); ++k) {
      const int asked = counts[k] > 0 ? counts[k] : left;
      left -= asked;
      CUexecAffinityParam affinity{};
      affinity.type = CU_EXEC_AFFINITY_TYPE_SM_COUNT;
      affinity.param.smCount.val = static_cast<unsigned int>(asked);
      CUctxCreateParams params{};
      params.execAffinityParams = &affinity;
      params.numExecAffinityParams = 1;
      CUcontext context = nullptr;
      const CUresult created = mps_.cuCtxCreate(&context, &params, 0, device_);
      if (created == CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY) {
        return absl::FailedPreconditionError(
            absl::StrCat("SM-count contexts need an MPS control daemon; ", AsAbsl(kStartMps)));
      }
      CUDA_RETURN_IF_ERROR(created);
      Partition* partition = NewPartition(context);
      partition->OwnContext(&mps_);
      split[k] = partition;
      // cuCtxCreate pushed the new context onto this thread: read its actual SM count, then pop
      // it so the caller's thread is as it was.
      CUexecAffinityParam actual{};
      const absl::Status read =
          CUDA_STATUS(mps_.cuCtxGetExecAffinity(&actual, CU_EXEC_AFFINITY_TYPE_SM_COUNT));
      CUcontext popped = nullptr;
      CUDA_RETURN_IF_ERROR(core_.cuCtxPopCurrent(&popped));
      RETURN_IF_ERROR(read);
      partition->set_sm_count(static_cast<int>(actual.param.smCount.val));
    }
    return absl::OkStatus();
  }

  PartitionBackend backend_;
  CoreDriver core_;
  GreenDriver green_;
  MpsDriver mps_;
  CUdevice device_;
  int device_sm_count_;
  CUcontext primary_ = nullptr;
  std::vector<CUgreenCtx> scaffolds_;
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::vector<std::vector<const SmPartition*>> splits_;
  double creation_ms_ = 0;
};

absl::Status ValidateSplits(const std::vector<std::vector<int>>& splits, int device,
                            int device_sm_count) {
  for (int index = 0; index < static_cast<int>(splits.size()); ++index) {
    const std::vector<int>& split = splits[index];
    if (split.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(SplitName(index, split), " is empty"));
    }
    int asked = 0;
    for (size_t k = 0; k < split.size(); ++k) {
      if (split[k] > 0) {
        asked += split[k];
      } else if (k + 1 != split.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            SplitName(index, split), ": only the last partition may take the rest (count <= 0)"));
      }
    }
    const bool has_rest = split.back() <= 0 && split.size() > 1;
    if (asked > device_sm_count || (has_rest && asked >= device_sm_count)) {
      return absl::InvalidArgumentError(
          absl::StrCat(SplitName(index, split), " asks for ", asked, " SMs",
                       has_rest ? " and a rest" : "", ", device ", device, " has ",
                       device_sm_count));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PartitionSetImpl>> BuildSet(
    PartitionBackend backend, const CoreDriver& core, CUdevice device, int device_sm_count,
    const std::vector<std::vector<int>>& splits) {
  auto set = std::make_unique<PartitionSetImpl>(backend, core, device, device_sm_count);
  RETURN_IF_ERROR(set->Build(splits));
  return set;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PartitionSet>> PartitionSet::Create(
    PartitionBackend backend, int device, const std::vector<std::vector<int>>& splits) {
  int device_count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&device_count));
  if (device < 0 || device >= device_count) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device ", device, " (", device_count, " visible)"));
  }
  int device_sm_count = 0;
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&device_sm_count, cudaDevAttrMultiProcessorCount, device));
  RETURN_IF_ERROR(ValidateSplits(splits, device, device_sm_count));
  ASSIGN_OR_RETURN(CoreDriver core, LoadCoreDriver());
  // The runtime and the driver number the visible devices alike.
  CUdevice cu_device = 0;
  CUDA_RETURN_IF_ERROR(core.cuDeviceGet(&cu_device, device));

  absl::StatusOr<std::unique_ptr<PartitionSetImpl>> set;
  if (backend == PartitionBackend::kAuto) {
    set = BuildSet(PartitionBackend::kGreen, core, cu_device, device_sm_count, splits);
    if (!set.ok() && set.status().code() != absl::StatusCode::kInvalidArgument) {
      spdlog::info("partitions: green contexts unavailable ({}), using none",
                   set.status().ToString());
      set = BuildSet(PartitionBackend::kNone, core, cu_device, device_sm_count, splits);
    }
  } else {
    set = BuildSet(backend, core, cu_device, device_sm_count, splits);
  }
  RETURN_IF_ERROR(set.status());

  const PartitionSetImpl& made = **set;
  spdlog::info("partitions: backend {} on device {} ({} SMs): {} partitions in {} splits, made in "
               "{:.1f} ms",
               config::PartitionBackendName(made.backend()), device, device_sm_count, made.size(),
               made.num_splits(), made.creation_ms());
  for (int index = 0; index < made.num_splits(); ++index) {
    std::vector<std::string> labels;
    for (const SmPartition* partition : made.split(index)) labels.push_back(partition->label());
    spdlog::info("partitions: {}: {}", SplitName(index, splits[index]),
                 absl::StrJoin(labels, " "));
  }
  return std::unique_ptr<PartitionSet>(std::move(*set));
}

absl::Status LeavePartitions() {
  ASSIGN_OR_RETURN(auto set_current, DriverFunction<decltype(::cuCtxSetCurrent)>("cuCtxSetCurrent"));
  CUDA_RETURN_IF_ERROR(set_current(nullptr));
  return absl::OkStatus();
}

}  // namespace muxserve::runtime
