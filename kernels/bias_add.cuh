// Adds a bias vector to every row on the GPU (after a cuBLAS GEMM, for qkv biases).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i, j] += bias[j], in float32 then rounded. T: bf16 or fp16.
template <typename T>
cudaError_t BiasAddCuda(T* out,         // [m, n]
                        const T* bias,  // [n]
                        int64_t m, int64_t n, cudaStream_t stream);

}  // namespace muxserve::kernels
