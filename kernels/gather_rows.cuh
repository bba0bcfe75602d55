// Gathers rows of a matrix on the GPU (the rows whose logits a step samples).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i] = x[rows[i]].
cudaError_t GatherRowsCuda(const bf16* x,        // [*, width]
                           const int32_t* rows,  // [num_rows]
                           int64_t num_rows, int64_t width,
                           bf16* out,  // [num_rows, width]
                           cudaStream_t stream);

}  // namespace muxserve::kernels
