// The CUDA devices this process can see, and the choice of compute backend from the config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/config/config.h"

namespace muxserve::runtime {

struct DeviceInfo {
  int index = 0;  // the CUDA runtime's ordinal (after CUDA_VISIBLE_DEVICES)
  std::string name;
  int sm_count = 0;
  int64_t total_memory = 0;  // bytes
  int cc_major = 0;          // compute capability
  int cc_minor = 0;
};

// Whether this binary was compiled with the CUDA toolkit.
bool CudaBuilt();

// Whether this binary carries the CUDA compute backend (kernels and device ops).
bool CudaBackendAvailable();

// The visible devices. Empty, not an error, when the binary was built without CUDA or when the
// machine has no device or no (sufficient) driver; other CUDA failures are errors.
absl::StatusOr<std::vector<DeviceInfo>> ListCudaDevices();

// The backend to run on: kAuto picks cuda when the CUDA backend is available and a device is
// visible, else cpu. kCuda without the backend or without a device is FAILED_PRECONDITION.
absl::StatusOr<config::Backend> ResolveBackend(config::Backend requested);

}  // namespace muxserve::runtime
