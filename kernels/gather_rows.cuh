// Gathers rows of a matrix on the GPU (the rows whose logits a step samples).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i] = x[rows[i]]. T: bf16 or fp16.
template <typename T>
cudaError_t GatherRowsCuda(const T* x,           // [*, width]
                           const int32_t* rows,  // [num_rows]
                           int64_t num_rows, int64_t width,
                           T* out,  // [num_rows, width]
                           cudaStream_t stream);

}  // namespace muxserve::kernels
