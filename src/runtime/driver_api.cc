#include "muxserve/runtime/driver_api.h"

#include <cuda.h>
#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"

namespace muxserve::runtime {

absl::StatusOr<void*> DriverSymbol(const char* symbol) {
  void* address = nullptr;
  cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
  const cudaError_t result =
      cudaGetDriverEntryPointByVersion(symbol, &address, CUDA_VERSION, cudaEnableDefault, &query);
  if (result != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat("cannot look up CUDA driver function ",
                                                      symbol, ": ", cudaGetErrorName(result), ": ",
                                                      cudaGetErrorString(result)));
  }
  if (query != cudaDriverEntryPointSuccess || address == nullptr) {
    return absl::NotFoundError(absl::StrCat("the CUDA driver has no function ", symbol,
                                            " of CUDA version ", CUDA_VERSION));
  }
  return address;
}

}  // namespace muxserve::runtime
