// Adds a bias vector to every row on the GPU (after a cuBLAS GEMM, for qkv biases).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i, j] += bias[j].
cudaError_t BiasAddCuda(bf16* out,         // [m, n]
                        const bf16* bias,  // [n]
                        int64_t m, int64_t n, cudaStream_t stream);

}  // namespace muxserve::kernels
