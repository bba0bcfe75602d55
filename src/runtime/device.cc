#include "muxserve/runtime/device.h"

#include "muxserve/common/status.h"
#include "spdlog/spdlog.h"

#if MUXSERVE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "muxserve/runtime/check.h"
#endif

namespace muxserve::runtime {

bool CudaBuilt() { return MUXSERVE_WITH_CUDA != 0; }

// CUDA builds carry the engine's CUDA backend (engine::MakeCudaOps).
bool CudaBackendAvailable() { return MUXSERVE_WITH_CUDA != 0; }

absl::StatusOr<std::vector<DeviceInfo>> ListCudaDevices() {
  std::vector<DeviceInfo> devices;
#if MUXSERVE_WITH_CUDA
  int count = 0;
  const cudaError_t result = cudaGetDeviceCount(&count);
  if (result == cudaErrorNoDevice || result == cudaErrorInsufficientDriver ||
      result == cudaErrorStubLibrary) {
    spdlog::debug("no CUDA device: {}", cudaGetErrorString(result));
    cudaGetLastError();  // clears the error so later runtime calls do not report it again
    return devices;
  }
  CUDA_RETURN_IF_ERROR(result);
  for (int index = 0; index < count; ++index) {
    cudaDeviceProp properties{};
    CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, index));
    devices.push_back(DeviceInfo{.index = index,
                                 .name = properties.name,
                                 .sm_count = properties.multiProcessorCount,
                                 .total_memory = static_cast<int64_t>(properties.totalGlobalMem),
                                 .cc_major = properties.major,
                                 .cc_minor = properties.minor});
  }
#endif
  return devices;
}

absl::StatusOr<config::Backend> ResolveBackend(config::Backend requested) {
  switch (requested) {
    case config::Backend::kCpu:
      return config::Backend::kCpu;
    case config::Backend::kAuto:
    case config::Backend::kCuda:
      break;
  }
  if (!CudaBackendAvailable()) {
    if (requested == config::Backend::kAuto) return config::Backend::kCpu;
    return absl::FailedPreconditionError(
        "runtime.backend is cuda, but the CUDA backend is not built into this binary "
        "(use backend: cpu or auto)");
  }
  ASSIGN_OR_RETURN(std::vector<DeviceInfo> devices, ListCudaDevices());
  if (!devices.empty()) return config::Backend::kCuda;
  if (requested == config::Backend::kAuto) return config::Backend::kCpu;
  return absl::FailedPreconditionError(
      "runtime.backend is cuda, but no CUDA device is visible (no GPU or driver, or "
      "CUDA_VISIBLE_DEVICES hides them; use backend: cpu or auto)");
}

}  // namespace muxserve::runtime
