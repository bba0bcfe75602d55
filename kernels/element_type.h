// Host side: the CUDA kernels' element type of a DType, so that code holding a dtype at run time
// (the CUDA backend, benchmarks, tests) launches the matching instantiation of a kernel.
#pragma once

#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "muxserve/common/dtype.h"

namespace muxserve::kernels {

// Returns launch(std::type_identity<T>{}), T being fp16 for DType::kFloat16 and bf16 otherwise
// (float32 never reaches the kernels: MakeCudaOps refuses it).
template <typename Launch>
decltype(auto) WithElementType(DType dtype, Launch&& launch) {
  if (dtype == DType::kFloat16) return launch(std::type_identity<fp16>{});
  return launch(std::type_identity<bf16>{});
}

}  // namespace muxserve::kernels
