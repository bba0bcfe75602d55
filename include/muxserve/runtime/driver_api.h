// CUDA driver API functions, found at run time through the CUDA runtime instead of linked from
// libcuda: binaries then start on machines without a GPU driver (CI, the CPU backend) and fail
// only when they really call the driver. Only in CUDA builds (MUXSERVE_WITH_CUDA).
#pragma once

#if MUXSERVE_WITH_CUDA

#include "absl/status/statusor.h"
#include "muxserve/common/status.h"

namespace muxserve::runtime {

// The address of a driver function in the ABI of the cuda.h this binary was compiled with.
// FAILED_PRECONDITION when no usable driver is loaded, NOT_FOUND when it lacks the symbol.
absl::StatusOr<void*> DriverSymbol(const char* symbol);

// Typed: `DriverFunction<decltype(cuGetErrorName)>("cuGetErrorName")`.
template <typename Function>
absl::StatusOr<Function*> DriverFunction(const char* symbol) {
  ASSIGN_OR_RETURN(void* address, DriverSymbol(symbol));
  return reinterpret_cast<Function*>(address);
}

}  // namespace muxserve::runtime

#endif  // MUXSERVE_WITH_CUDA
