// Token embedding lookup on the GPU (bf16 or fp16).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i] = table[tokens[i]]. T: bf16 or fp16.
template <typename T>
cudaError_t EmbeddingCuda(const int32_t* tokens,  // [n]
                          const T* table,         // [vocab, hidden]
                          int64_t n, int64_t hidden,
                          T* out,  // [n, hidden]
                          cudaStream_t stream);

}  // namespace muxserve::kernels
