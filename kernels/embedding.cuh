// Token embedding lookup on the GPU (bf16).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i] = table[tokens[i]].
cudaError_t EmbeddingCuda(const int32_t* tokens,  // [n]
                          const bf16* table,      // [vocab, hidden]
                          int64_t n, int64_t hidden,
                          bf16* out,  // [n, hidden]
                          cudaStream_t stream);

}  // namespace muxserve::kernels
